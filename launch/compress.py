"""Compress an embedding folder (or an .npy) with an exported compressor, at scale.

  python -m launch.compress --compressor DIR/compressor.npz --input EMB_DIR --part corpus \
      --size 64 --precision int8 --out codes/corpus
  python -m launch.compress --compressor DIR/compressor.npz --input EMB_DIR --part queries \
      --like codes/corpus --precision float32 --out codes/queries   # float queries: asymmetric

Streams in chunks (flat memory), resumes after a kill (rerun the same command), and with
--num_processes shards the chunks over processes (jax.distributed). Writes codes.npy,
ids.txt and manifest.json; codes made with different settings are refused downstream.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs
from smec_jax.core import codes

FLAGS = flags.FLAGS
flags.DEFINE_string("compressor", None, "Exported compressor.npz.", required=True)
flags.DEFINE_string("input", None, "Embedding folder, or an (n, D) .npy file.", required=True)
flags.DEFINE_enum("part", "corpus", ["corpus", "queries"], "Which part of an embedding folder.")
flags.DEFINE_string("out", None, "Codes folder to create.", required=True)
flags.DEFINE_integer("size", None, "Code size (one of the compressor's trained sizes).")
flags.DEFINE_enum("precision", None, list(codes.PRECISIONS), "Code precision.")
flags.DEFINE_string("like", None, "A codes folder whose compressor, size and calibration to use.")
flags.DEFINE_string("ids", None, "Ids file for a bare .npy (default: row numbers).")
flags.DEFINE_integer("chunk", 65536, "Rows per chunk (memory and resume granularity).")
flags.DEFINE_string(
    "corpus_codes", None, "corpus_codes.npz of free document codes (distill_pseudo_codes)."
)
cli.define_distributed_flags()

if __name__ == "__main__":
    cli.run_main(
        lambda: jobs.compress(
            FLAGS.compressor,
            FLAGS.input,
            FLAGS.out,
            part=FLAGS.part,
            size=FLAGS.size,
            precision=FLAGS.precision,
            like=FLAGS.like,
            ids_file=FLAGS.ids,
            chunk=FLAGS.chunk,
            corpus_codes=FLAGS.corpus_codes,
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
        )
    )
