"""Build a faiss index from a codes folder (``launch.compress``).

  python -m launch.index --codes codes/corpus --kind sq8 --out index/sq8

Kinds: flat (float codes, IndexFlatIP), sq8 (int8 codes, IndexScalarQuantizer 8-bit with the
codes' own calibration), binary (binary codes, IndexBinaryFlat), hnsw (float codes,
IndexHNSWFlat; --m, --ef_construction, --ef_search), scan (int4 / int2 / binary / ITQ
binary codes, packed in memory and scored exactly chunk by chunk, with coded or float
queries; no faiss); for corpora larger than memory, ivf_flat (float codes), ivf_sq8 (int8
codes, held exactly) and ivf_pq (float codes re-encoded in --pq_m bytes): trained on
--train_rows evenly spaced rows, filled shard by shard (or --block_rows rows at a time),
merged on disk and searched memory-mapped, probing --nprobe of --nlist lists. Score it with
``python -m launch.evaluate --index DIR --query_codes DIR --workdir OUT``.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
flags.DEFINE_string("codes", None, "Codes folder of the documents.", required=True)
flags.DEFINE_enum(
    "kind",
    "flat",
    ["flat", "sq8", "binary", "hnsw", "scan", "ivf_flat", "ivf_sq8", "ivf_pq"],
    "Index kind.",
)
flags.DEFINE_string("out", None, "Index folder to create.", required=True)
flags.DEFINE_integer("m", 32, "HNSW: neighbours per node.")
flags.DEFINE_integer("ef_construction", 80, "HNSW: candidate list while building.")
flags.DEFINE_integer("ef_search", 64, "HNSW: candidate list while searching.")
flags.DEFINE_integer("nlist", 0, "IVF: lists (0: about 4 sqrt(rows), a power of two).")
flags.DEFINE_integer("nprobe", 16, "IVF: lists probed per query.")
flags.DEFINE_integer("train_rows", 0, "IVF: rows to train on (0: 256 per list).")
flags.DEFINE_integer("pq_m", 0, "ivf_pq: bytes per vector (0: a quarter of the dims).")
flags.DEFINE_integer("block_rows", 1 << 20, "IVF: rows added at a time from a codes.npy.")


def params() -> dict:
    if FLAGS.kind.startswith("ivf_"):
        names = ("nlist", "nprobe", "train_rows", "pq_m", "block_rows")
    elif FLAGS.kind == "hnsw":
        names = ("m", "ef_construction", "ef_search")
    else:
        names = ()
    return {n: getattr(FLAGS, n) for n in names}


if __name__ == "__main__":
    cli.run_main(lambda: jobs.build_index(FLAGS.codes, FLAGS.kind, FLAGS.out, **params()))
