"""Score every method at every ladder size on a split.

  python -m launch.evaluate [--config configs/default.py] --workdir DIR

Prints a table and writes ``DIR/results.json`` and ``DIR/ndcg_vs_dim.png``.
"""

from __future__ import annotations

import time

import jax
from absl import flags

from launch import common
from smec_jax import compressors, data, evaluation, parallel

FLAGS = flags.FLAGS
common.define_config_and_workdir("workdirs/evaluate")


def run(config, workdir: str) -> dict:
    """Fits the configured methods, scores them, writes results.json and the plot."""
    ds = data.load_from_config(config.data)
    ladder = tuple(int(d) for d in config.ladder)
    if ladder[0] > ds.dim:
        raise ValueError(f"ladder {ladder} starts above the embedding size {ds.dim}")
    fitted = {m: compressors.fit_method(m, ds, ladder, config) for m in config.eval.methods}
    mesh = parallel.data_mesh() if jax.device_count() > 1 else None
    start = time.perf_counter()
    results = evaluation.evaluate(
        ds,
        fitted,
        ladder,
        split=config.eval.split,
        mesh=mesh,
        exclude_self=config.eval.exclude_self,
    )
    print(
        f"scored {len(fitted)} methods x {len(ladder)} sizes in {time.perf_counter() - start:.2f}s"
    )
    doc = evaluation.results_document(ds, config.eval.split, results)
    evaluation.report(doc, workdir)
    return doc


if __name__ == "__main__":
    common.run_main(lambda: run(FLAGS.config, FLAGS.workdir))
