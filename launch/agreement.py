"""Top-k agreement of a compressor with the full-size ranking, on your own queries: no
judgment needed (see :mod:`smec_jax.evaluation.fidelity`).

  python -m launch.agreement --embeddings EMB_DIR --compressor RUN/compressor.npz \
      [--corpus_codes RUN/corpus_codes.npz] [--k 10] [--out agreement.json] \
      [--query_ids IDS.txt] [--versus OTHER/compressor.npz]

Prints one row per trained size: the share of each query's full-size top k that the
compressed search keeps, averaged over every query of EMB_DIR, by the map and (with
--corpus_codes) by the fitted corpus codes.
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("embeddings", None, "Embedding folder (corpus and queries).", required=True)
flags.DEFINE_string("compressor", None, "Exported compressor.npz.", required=True)
flags.DEFINE_string("corpus_codes", None, "corpus_codes.npz of free document codes.")
flags.DEFINE_integer("k", 10, "Top k compared.")
flags.DEFINE_string("out", None, "Also write the result here as JSON.")
flags.DEFINE_string("query_ids", None, "Score only these queries (an ids file, one per line).")
flags.DEFINE_string(
    "versus", None, "Another compressor.npz: its agreement too, and the paired 95% interval."
)


def main():
    from smec_jax.evaluation import fidelity

    doc = fidelity.run(
        FLAGS.embeddings,
        FLAGS.compressor,
        FLAGS.corpus_codes,
        k=FLAGS.k,
        out=FLAGS.out,
        query_ids=FLAGS.query_ids,
        versus=FLAGS.versus,
    )
    print(fidelity.table(doc))


if __name__ == "__main__":
    cli.run_main(main)
