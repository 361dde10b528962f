"""Score every method of ``config.eval.methods`` at every ladder size on a split, or the
ranking of a faiss index.

  python -m launch.evaluate [--config configs/default.py] --workdir DIR
  python -m launch.evaluate --index INDEX_DIR --query_codes CODES_DIR --workdir DIR

Prints a table and writes ``DIR/results.json`` and ``DIR/ndcg_vs_dim.png``.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
cli.define_config_and_workdir("workdirs/evaluate")
flags.DEFINE_string("index", None, "A faiss index folder (launch.index) to score instead.")
flags.DEFINE_string("query_codes", None, "With --index: the queries' codes (launch.compress).")
flags.DEFINE_integer("shortlist", None, "Funnel: candidates the index returns (default 100).")
flags.DEFINE_multi_string(
    "rescore",
    [],
    "Funnel stage DOC_CODES,QUERY_CODES,KEEP: rescore the candidates with these codes (same "
    "compressor; e.g. a longer prefix or float precision) and keep the best KEEP. Repeatable.",
)


def rescore_stages(values):
    from smec_jax.serving.funnel import Rescore

    stages = []
    for v in values:
        parts = v.split(",")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(f"--rescore {v!r}: give DOC_CODES,QUERY_CODES,KEEP")
        stages.append(Rescore(parts[0], parts[1], int(parts[2])))
    return stages


def main():
    if FLAGS.index or FLAGS.query_codes:
        if not (FLAGS.index and FLAGS.query_codes):
            raise ValueError("--index and --query_codes go together")
        return jobs.evaluate_index(
            FLAGS.config,
            FLAGS.index,
            FLAGS.query_codes,
            FLAGS.workdir,
            rescore=rescore_stages(FLAGS.rescore),
            shortlist=FLAGS.shortlist,
        )
    return jobs.evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    cli.run_main(main)
