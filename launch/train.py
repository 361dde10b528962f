"""Train SMEC, then score it next to truncation and PCA at every ladder size.

  python -m launch.train [--config configs/default.py] --workdir DIR [--config.train.lr=...]

Writes into DIR: checkpoints/ (resumable: rerun the same command), metrics.jsonl,
tensorboard/, results.json, ndcg_vs_dim.png and compressor.npz (the nested export).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
from absl import app, flags

from launch import common
from smec_jax import compressors, data, evaluation, export, parallel, train

FLAGS = flags.FLAGS
common.define_config_and_workdir("runs/scifact")


def run(config, workdir: str) -> dict:
    if config.distributed:
        jax.distributed.initialize()
    ds = data.load_from_config(config.data)
    n_dev = config.mesh.num_devices or jax.device_count()
    train.validate_config(config, ds, n_dev)  # bad configs fail before anything compiles
    print(f"{ds.name}: {len(ds.corpus_ids)} docs, {ds.dim}-d {ds.encoder}; method {config.method}, "
          f"ladder {tuple(config.ladder)}, {n_dev} device(s) [{jax.default_backend()}]", flush=True)
    start = time.perf_counter()
    result = train.train(config, ds, workdir)
    print(f"trained in {time.perf_counter() - start:.1f}s; validation nDCG@10: {result.val_ndcg}")
    fitted = {m: compressors.fit_method(m, ds, config.ladder, config) for m in config.eval.methods}
    fitted[config.method] = result.compressor
    mesh = parallel.data_mesh(n_dev) if n_dev > 1 else None
    results = evaluation.evaluate(ds, fitted, config.ladder, split=config.eval.split, mesh=mesh,
                                  exclude_self=config.eval.exclude_self)
    doc = evaluation.results_document(ds, config.eval.split, results)
    print(evaluation.format_table(doc))
    if jax.process_index() == 0:
        evaluation.write_results(workdir, doc)
        evaluation.plot_results(doc, Path(workdir) / "ndcg_vs_dim.png")
        export.save(result.compressor, Path(workdir) / "compressor.npz")
        print(f"wrote {workdir}/results.json, ndcg_vs_dim.png, compressor.npz")
    return doc


def main(argv):
    del argv
    common.guarded(lambda: run(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
    app.run(main)
