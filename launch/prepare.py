"""Package an embedded retrieval dataset as a tfds array_record dataset for training input.

  python -m launch.prepare [--config configs/default.py] --out DIR

Then train or evaluate from it with ``--config.data.source=tfds --config.data.tfds_dir=DIR``.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
cli.define_config_and_workdir()
flags.DEFINE_string("out", None, "Folder to write the tfds dataset into.", required=True)

if __name__ == "__main__":
    cli.run_main(lambda: jobs.prepare(FLAGS.config, FLAGS.out))
