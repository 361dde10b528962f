"""Score every method of ``config.eval.methods`` at every ladder size on a split.

  python -m launch.evaluate [--config configs/default.py] --workdir DIR

Prints a table and writes ``DIR/results.json`` and ``DIR/ndcg_vs_dim.png``.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
cli.define_config_and_workdir("workdirs/evaluate")

if __name__ == "__main__":
    cli.run_main(lambda: jobs.evaluate(FLAGS.config, FLAGS.workdir))
