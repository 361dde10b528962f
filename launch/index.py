"""Build a faiss index from a codes folder (``launch.compress``).

  python -m launch.index --codes codes/corpus --kind sq8 --out index/sq8

Kinds: flat (float codes, IndexFlatIP), sq8 (int8 codes, IndexScalarQuantizer 8-bit with the
codes' own calibration), binary (binary codes, IndexBinaryFlat), hnsw (float codes,
IndexHNSWFlat; --m, --ef_construction, --ef_search), scan (int4 / int2 / binary / ITQ
binary codes, packed in memory and scored exactly chunk by chunk, with coded or float
queries; no faiss). Score it with
``python -m launch.evaluate --index DIR --query_codes DIR --workdir OUT``.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
flags.DEFINE_string("codes", None, "Codes folder of the documents.", required=True)
flags.DEFINE_enum("kind", "flat", ["flat", "sq8", "binary", "hnsw", "scan"], "Index kind.")
flags.DEFINE_string("out", None, "Index folder to create.", required=True)
flags.DEFINE_integer("m", 32, "HNSW: neighbours per node.")
flags.DEFINE_integer("ef_construction", 80, "HNSW: candidate list while building.")
flags.DEFINE_integer("ef_search", 64, "HNSW: candidate list while searching.")

if __name__ == "__main__":
    cli.run_main(
        lambda: jobs.build_index(
            FLAGS.codes,
            FLAGS.kind,
            FLAGS.out,
            m=FLAGS.m,
            ef_construction=FLAGS.ef_construction,
            ef_search=FLAGS.ef_search,
        )
    )
