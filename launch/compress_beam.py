"""Compress embedding shards on Apache Beam (DirectRunner here; Dataflow, Flink or Spark with
their pipeline options after ``--``).

  python -m launch.compress_beam --input 'gs://bucket/emb/part-*.npy' --compressor DIR \
      --size 64 --precision int8 --out codes/ -- --runner=DataflowRunner --project=P ...

Shards: ``.npy`` with a sibling ``.ids.txt`` or ``.parquet`` with ``id`` and ``vector``
columns. Writes a codes folder that ``launch.index``, ``launch.evaluate --index`` and the
Python API read like a ``launch.compress`` folder (see smec_jax/serving/beam.py).
"""

from __future__ import annotations

import sys

from absl import flags

from smec_jax import cli
from smec_jax.serving import beam

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "Glob of the input shards (local or gs://).", required=True)
flags.DEFINE_string(
    "compressor", None, "compressor.npz or a saved compressor folder.", required=True
)
flags.DEFINE_string("out", None, "Codes folder to create.", required=True)
flags.DEFINE_integer("size", None, "Code size (one of the compressor's sizes).")
flags.DEFINE_string("precision", None, "float32, float16, int8, int4, int2, binary, binary_itq.")
flags.DEFINE_string("like", None, "A codes folder whose size, precision and calibration to use.")
flags.DEFINE_enum("part", "corpus", ["corpus", "queries"], "queries: the query map.")
flags.DEFINE_enum("format", "npy", list(beam.FORMATS), "Output shards: npy + ids.txt, or parquet.")
flags.DEFINE_string("vector_column", beam.VECTOR_COLUMN, "Parquet input: the vector column.")

if __name__ == "__main__":
    argv = sys.argv
    pipeline_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pipeline_args = argv[:cut], argv[cut + 1 :]
        sys.argv = argv
    cli.run_main(
        lambda: beam.run(
            FLAGS.input,
            FLAGS.compressor,
            FLAGS.out,
            size=FLAGS.size,
            precision=FLAGS.precision,
            like=FLAGS.like,
            part=FLAGS.part,
            fmt=FLAGS.format,
            vector_column=FLAGS.vector_column,
            pipeline_args=pipeline_args,
        )
    )
