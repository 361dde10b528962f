"""Speed benchmarks (not tests): medians of several runs, printed and optionally saved.

  python -m launch.benchmark [--bench eval,matmul,train_step,retrieval,learned_pq,...] [--config ...] \
      [--repeats 5] [--out FILE.json]

What each benchmark measures: smec_jax/studies/profiling.py.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli
from smec_jax.studies import profiling

FLAGS = flags.FLAGS
cli.define_config_and_workdir()
flags.DEFINE_list("bench", ["eval", "matmul", "train_step", "retrieval"], "Benchmarks to run.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions (the median is reported).")
flags.DEFINE_string("out", None, "Optional JSON file for the figures.")
flags.DEFINE_integer("corpus_size", 1_000_000, "Documents in the retrieval benchmark's corpus.")
flags.DEFINE_list("num_queries", ["256", "2048"], "Query counts for the retrieval benchmark.")
flags.DEFINE_list("shapes", ["768"], "train_step / torch_peer shapes: 768 and/or 4096.")
flags.DEFINE_integer("train_steps", 20, "train_4096: steps per stage.")
flags.DEFINE_list(
    "neighbour_modes",
    ["memory", "gather", "list"],
    "train_step / train_4096: the S-XBM neighbour modes to time (the 4096 shape takes "
    "minutes per mode on a 2-core CPU).",
)

if __name__ == "__main__":
    cli.run_main(
        lambda: profiling.run_benchmarks(
            FLAGS.config,
            FLAGS.bench,
            repeats=FLAGS.repeats,
            out=FLAGS.out,
            corpus_size=FLAGS.corpus_size,
            num_queries=[int(x) for x in FLAGS.num_queries],
            shapes=FLAGS.shapes,
            train_steps=FLAGS.train_steps,
            neighbour_modes=FLAGS.neighbour_modes,
        )
    )
