"""The reproduction report's analyses, written beside the report of ``launch.reproduce``.

  python -m launch.analyze [--config configs/default.py] --workdir docs/results/scifact-minilm \
      [--analyses grad,ads,memory,cross] [--memory_sizes 1000,2500,5000,10000,15000] \
      [--targets nfcorpus,dbpedia-entity-5k,msmarco-dl19-5k] [--seeds 0,1,2]

* grad:   gradient probe, MRL vs SMRL -> grad_variance.png.
* ads:    WARE importance and the achievement rate of ADS vs prefix truncation -> ads_ware.png.
* memory: S-XBM memory-size sweep (nDCG@10 and step time) -> memory_sweep.png.
* cross:  SciFact-trained compressors (the reproduce runs of ``--seeds`` in ``workdir/runs``)
          applied unchanged to other corpora, next to label-free methods and PCA fitted on
          each target (each seed); missing target embeddings are made under
          ``--embed_cache``, missing pseudo-queries under ``--config.data.pseudo_cache``.

Writes ``analysis.md`` and ``analysis.json`` into ``--workdir`` (see smec_jax/analyses).
"""

from __future__ import annotations

from absl import flags

from smec_jax import analyses, cli
from smec_jax.analyses import cross_corpus

FLAGS = flags.FLAGS
cli.define_config_and_workdir("runs/reproduce")
flags.DEFINE_list("analyses", list(analyses.ANALYSES), "Analyses to run.")
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
        )
    )
