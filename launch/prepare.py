"""Package an embedded retrieval dataset as a tfds array_record dataset for training input.

  python -m launch.prepare [--config configs/default.py] --out DIR

Then train or evaluate from it with ``--config.data.source=tfds --config.data.tfds_dir=DIR``.
"""

from __future__ import annotations

from absl import app, flags

from launch import common
from smec_jax import data, tfds_dataset

FLAGS = flags.FLAGS
common.define_config_and_workdir()
flags.DEFINE_string("out", None, "Folder to write the tfds dataset into.", required=True)


def main(argv):
    del argv

    def run():
        rd = data.load_from_config(FLAGS.config.data)
        path = tfds_dataset.write_tfds(rd, FLAGS.out)
        print(f"wrote {rd.name} ({len(rd.corpus_ids)} docs, splits {sorted(rd.qrels)}) to {path}")

    common.guarded(run)


if __name__ == "__main__":
    app.run(main)
