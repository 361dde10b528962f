"""Train every registered method over several seeds on one dataset and write the report.

  python -m launch.reproduce [--config configs/default.py] --workdir DIR \
      [--methods smec,mrl,...] [--seeds 0,1,2] [--report_only]

Every method goes through the same data, step budget (the config's) and evaluation; each
(method, seed) result is kept in DIR/runs/ so a rerun resumes where it stopped. Writes
DIR/results.json (the usual format, with ``<metric>_std`` beside each mean), DIR/report.md
(main table, ablation table, all and unseen queries) and DIR/ndcg_vs_dim.png. Test qrels
are read only to score finished models.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, methods
from smec_jax.studies import reproduction

FLAGS = flags.FLAGS
cli.define_config_and_workdir("runs/reproduce")
flags.DEFINE_list("methods", methods.names(), "Methods to compare (default: every registered).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (trained methods only; closed-form: one fit).")
flags.DEFINE_bool(
    "report_only",
    False,
    "Rewrite report.md and the plot from DIR/results.json (what an earlier run measured); "
    "trains and scores nothing.",
)


def main():
    seeds = [int(x) for x in FLAGS.seeds]
    if FLAGS.report_only:
        return reproduction.report_only(FLAGS.workdir, seeds)
    return reproduction.run(FLAGS.config, FLAGS.workdir, FLAGS.methods, seeds)


if __name__ == "__main__":
    cli.run_main(main)
