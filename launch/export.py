"""Export the compressor of a finished training run as a numpy-only nested map.

  python -m launch.export --config configs/X.py --workdir DIR [--out FILE.npz]

Reads DIR's final checkpoint (rerunning training is a no-op once it finished) and writes
the nested compressor: columns ordered so that every ladder size is a prefix.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
cli.define_config_and_workdir()
flags.DEFINE_string("out", None, "Output .npz (default DIR/compressor.npz).")

if __name__ == "__main__":
    cli.run_main(lambda: jobs.export(FLAGS.config, FLAGS.workdir, FLAGS.out))
