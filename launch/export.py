"""Export the compressor of a finished training run.

  python -m launch.export --config configs/X.py --workdir DIR [--out PATH]
  python -m launch.export --workdir DIR --format sentence_transformers --encoder all-MiniLM-L6-v2
  python -m launch.export --workdir DIR --format onnx
  python -m launch.export --config configs/X.py --original --out PATH   # the original embeddings

npz (default): a numpy-only nested map, columns ordered so that every trained size is a
prefix. sentence_transformers: the encoder with the compressor appended as modules;
``encode(texts, truncate_dim=d, normalize_embeddings=True)`` gives the SMEC vectors. onnx:
``compressor.onnx`` (inputs: embedding, size). Reads DIR's final checkpoint (rerunning
training is a no-op once it finished). ``--original``: no run; the identity map of the
config's embeddings (one size, the full dimension), so that ``launch.compress`` codes the
original vectors, e.g. to rescore a funnel's shortlist with them.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
cli.define_config_and_workdir()
flags.DEFINE_string("out", None, "Output path (default: in DIR).")
flags.DEFINE_enum("format", "npz", ["npz", "sentence_transformers", "onnx"], "Export format.")
flags.DEFINE_string("encoder", None, "sentence_transformers: the encoder (name or folder).")
flags.DEFINE_bool("original", False, "Write the identity map of the config's embeddings.")

if __name__ == "__main__":
    cli.run_main(
        lambda: (
            jobs.export_original(FLAGS.config, FLAGS.out)
            if FLAGS.original
            else jobs.export(FLAGS.config, FLAGS.workdir, FLAGS.out, FLAGS.format, FLAGS.encoder)
        )
    )
