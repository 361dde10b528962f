"""Bytes, not dimensions: nDCG@10 against bytes per document for every method, code and
funnel, with per-budget choices made on validation and bootstrap intervals against PCA.

  python -m launch.pareto [--config configs/default.py] --workdir docs/results/pareto-scifact-minilm \
      [--methods truncate,pca,search_adaptor,matryoshka_adaptor,smec,smec_binary] [--seeds 0,1,2]
  python -m launch.pareto --workdir DIR --from_saved   # rewrite DIR's report from its saved scores

Trained methods resume their runs in DIR/runs (the layout of launch.reproduce: point
--workdir at a reproduce folder to reuse its trainings). Writes pareto.md, pareto.json,
pareto.png and per_query.npz (see smec_jax/studies/pareto.py).
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli
from smec_jax.studies import pareto

FLAGS = flags.FLAGS
cli.define_config_and_workdir("runs/pareto")
flags.DEFINE_list("methods", list(pareto.DEFAULT_METHODS), "Methods to place on the axis.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (trained methods; closed-form: one fit).")
flags.DEFINE_bool(
    "faiss_codes", True, "Also faiss PQ, OPQ+PQ and RaBitQ codes of every dense method."
)
flags.DEFINE_list(
    "pq_bytes", [str(b) for b in pareto.PQ_BYTES], "Bytes per vector of the faiss PQ/OPQ codes."
)
flags.DEFINE_integer("opq_iterations", None, "OPQ's alternating iterations (default: faiss's, 50).")
flags.DEFINE_bool(
    "from_saved",
    False,
    "Fit and score nothing: recompute the choices, intervals and tables of the report in "
    "--workdir from its pareto.json and per_query.npz, and rewrite it.",
)


if __name__ == "__main__":
    cli.run_main(
        lambda: (
            pareto.rerender(FLAGS.workdir)
            if FLAGS.from_saved
            else pareto.run(
                FLAGS.config,
                FLAGS.workdir,
                FLAGS.methods,
                [int(s) for s in FLAGS.seeds],
                FLAGS.faiss_codes,
                tuple(int(b) for b in FLAGS.pq_bytes),
                FLAGS.opq_iterations,
            )
        )
    )
