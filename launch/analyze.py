"""The reproduction report's analyses, written beside the report of ``launch.reproduce``.

  python -m launch.analyze [--config configs/default.py] --workdir docs/results/scifact-minilm \
      [--analyses grad,ads,memory,cross,pooled] [--memory_sizes 1000,2500,5000,10000,15000] \
      [--targets nfcorpus,dbpedia-entity-5k,msmarco-dl19-5k] [--seeds 0,1,2] \
      [--pool_sources scifact:train,nfcorpus:train,... --pooled_methods smec,smec_pseudo] \
      [--log_shares 0,0.25,0.5]

* grad:   gradient probe, MRL vs SMRL -> grad_variance.png.
* ads:    WARE importance and the achievement rate of ADS vs prefix truncation -> ads_ware.png.
* memory: S-XBM memory-size sweep (nDCG@10 and step time) -> memory_sweep.png.
* cross:  SciFact-trained compressors (the reproduce runs of ``--seeds`` in ``workdir/runs``)
          applied unchanged to other corpora, next to label-free methods and PCA fitted on
          each target (each seed); missing target embeddings are made under
          ``--embed_cache``, missing pseudo-queries under ``--config.data.pseudo_cache``.
* pooled: leave one corpus out: for each of ``--pool_targets`` (default: every source
          with a test split), ``--pooled_methods`` trained on the judged pairs of every
          other corpus of ``--pool_sources`` (``name:split``; a name is a folder of the
          data root or a folder path) plus the target's documents, unjudged, then scored
          on the target next to PCA and ``--pool_target_methods`` fitted on it.
* query_log: ``distill_pseudo_log`` at each of ``--log_shares``, fitted with half of the
          training queries as its query log, scored on the other half (training
          judgments), apart on the log's topics and on new ones -> query_log.png (the
          first of ``--seeds`` sets the halves and the training seed).

Writes ``analysis.md`` and ``analysis.json`` into ``--workdir`` (see smec_jax/studies/analyses).
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli
from smec_jax.studies import analyses
from smec_jax.studies.analyses import cross_corpus, pooled

FLAGS = flags.FLAGS
cli.define_config_and_workdir("runs/reproduce")
flags.DEFINE_list(
    "analyses",
    ["grad", "ads", "memory", "cross"],
    f"Analyses to run, of {list(analyses.ANALYSES)}.",
)
flags.DEFINE_list("memory_sizes", ["1000", "2500", "5000", "10000", "15000"], "S-XBM sizes.")
flags.DEFINE_list(
    "targets", ["nfcorpus", "dbpedia-entity-5k", "msmarco-dl19-5k"], "Cross-corpus targets."
)
flags.DEFINE_list(
    "transfer_methods",
    ["smec", "smec_distill", "matryoshka_adaptor", "search_adaptor", "mrl"],
    "SciFact-trained methods applied to the targets.",
)
flags.DEFINE_list(
    "target_methods",
    list(cross_corpus.LABEL_FREE),
    "Label-free methods fitted on each target corpus alone.",
)
flags.DEFINE_string("embed_cache", "runs/embeddings", "Where missing target embeddings go.")
flags.DEFINE_list("seeds", ["0"], "Seeds of the cross-corpus fits (intervals over them too).")
flags.DEFINE_string(
    "pool_sources", pooled.SOURCES, "Pooled corpora as name:labelled_split (name alone: docs only)."
)
flags.DEFINE_list(
    "pool_targets",
    [],
    "Corpora scored by the pooled analysis; empty = every source with a test split.",
)
flags.DEFINE_list("pooled_methods", ["smec"], "Trainer methods fitted on each pool.")
flags.DEFINE_list(
    "pool_target_methods", ["smec_unsup"], "Label-free methods fitted on each pooled target."
)
flags.DEFINE_list("log_shares", ["0", "0.25", "0.5"], "Query-log shares (0 = distill_pseudo).")

if __name__ == "__main__":
    cli.run_main(
        lambda: analyses.run(
            FLAGS.config,
            FLAGS.workdir,
            FLAGS.analyses,
            memory_sizes=[int(q) for q in FLAGS.memory_sizes],
            targets=FLAGS.targets,
            transfer_methods=FLAGS.transfer_methods,
            target_methods=FLAGS.target_methods,
            embed_cache=FLAGS.embed_cache,
            seeds=[int(s) for s in FLAGS.seeds],
            pool_sources=FLAGS.pool_sources,
            pool_targets=FLAGS.pool_targets,
            pooled_methods=FLAGS.pooled_methods,
            pool_target_methods=FLAGS.pool_target_methods,
            log_shares=[float(s) for s in FLAGS.log_shares],
        )
    )
