"""Export the compressor of a finished training run as a numpy-only nested map.

  python -m launch.export --config configs/X.py --workdir DIR [--out FILE.npz]

Reads DIR's final checkpoint (rerunning training is a no-op once it finished) and writes
the nested compressor: columns ordered so that every ladder size is a prefix.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from launch import common
from smec_jax import data, export, train

FLAGS = flags.FLAGS
common.define_config_and_workdir()
flags.DEFINE_string("out", None, "Output .npz (default DIR/compressor.npz).")


def main(argv):
    del argv

    def run():
        if not FLAGS.workdir or not (Path(FLAGS.workdir) / "checkpoints").is_dir():
            raise ValueError(f"no checkpoints in {FLAGS.workdir}; train first with launch.train")
        ds = data.load_from_config(FLAGS.config.data)
        result = train.train(FLAGS.config, ds, FLAGS.workdir, verbose=False)
        out = export.save(result.compressor, FLAGS.out or Path(FLAGS.workdir) / "compressor.npz")
        print(f"wrote {out} (sizes {result.compressor.sizes})")

    common.guarded(run)


if __name__ == "__main__":
    app.run(main)
