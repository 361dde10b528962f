"""Train SMEC, then score it next to truncation and PCA at every ladder size.

  python -m launch.train [--config configs/default.py] --workdir DIR [--config.train.lr=...]

Writes into DIR: checkpoints/ (resumable: rerun the same command), metrics.jsonl,
tensorboard/, results.json, ndcg_vs_dim.png and compressor.npz (the nested export).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
from absl import flags

from launch import common
from smec_jax import compressors, data, evaluation, export, parallel, train

FLAGS = flags.FLAGS
common.define_config_and_workdir("runs/scifact")
flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 (multi-process runs "
    "off TPU/Slurm, where jax.distributed cannot detect it).",
)
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def initialize_distributed() -> None:
    """jax.distributed.initialize(): auto-detected on TPU pods and Slurm, explicit otherwise.

    CPU processes talk through gloo collectives (a no-op setting on TPU/GPU).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )
    print(
        f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} "
        f"local of {jax.device_count()} devices",
        flush=True,
    )


def run(config, workdir: str) -> dict:
    if config.distributed:
        initialize_distributed()
    ds = data.load_from_config(config.data)
    n_dev = config.mesh.num_devices or jax.device_count()
    train.validate_config(config, ds, n_dev)  # bad configs fail before anything compiles
    print(
        f"{ds.name}: {len(ds.corpus_ids)} docs, {ds.dim}-d {ds.encoder}; method {config.method}, "
        f"ladder {tuple(config.ladder)}, {n_dev} device(s) [{jax.default_backend()}]",
        flush=True,
    )
    start = time.perf_counter()
    compressor, val = train.fit(config, ds, workdir, verbose=jax.process_index() == 0)
    print(f"trained in {time.perf_counter() - start:.1f}s; validation nDCG@10: {val}")
    fitted = {m: compressors.fit_method(m, ds, config.ladder, config) for m in config.eval.methods}
    fitted[config.method] = compressor
    mesh = parallel.data_mesh(n_dev) if n_dev > 1 else None
    results = evaluation.evaluate(
        ds,
        fitted,
        config.ladder,
        split=config.eval.split,
        mesh=mesh,
        exclude_self=config.eval.exclude_self,
    )
    doc = evaluation.results_document(ds, config.eval.split, results)
    if jax.process_index() == 0:  # every process scored; one writes
        evaluation.report(doc, workdir)
        if isinstance(compressor, export.NestedCompressor):  # per-size adaptors do not nest
            print(f"wrote {export.save(compressor, Path(workdir) / 'compressor.npz')}")
    return doc


if __name__ == "__main__":
    common.run_main(lambda: run(FLAGS.config, FLAGS.workdir))
