"""What each command does, as one library function (the launchers are flags plus a call).

* :func:`train_and_evaluate` — ``launch.train``: fit ``config.method`` (any registered
  method), score it next to ``config.eval.methods`` at every ladder size, write
  ``results.json``, ``ndcg_vs_dim.png``, ``config.json`` and, for a nested compressor,
  ``compressor.npz``.
* :func:`evaluate` — ``launch.evaluate``: fit and score ``config.eval.methods``.
* :func:`export` — ``launch.export``: the nested compressor of a finished run as ``.npz``.
* :func:`prepare` — ``launch.prepare``: the dataset as a tfds ``array_record`` dataset.
* :func:`embed` — ``launch.embed``: a BEIR folder embedded with a sentence-transformers model.

``launch.reproduce``, ``launch.analyze`` and ``launch.benchmark`` call
:mod:`smec_jax.reproduction`, :mod:`smec_jax.analyses` and :mod:`smec_jax.profiling`.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax

from smec_jax import checks, files, methods, parallel, reporting, sources
from smec_jax import export as export_lib
from smec_jax.evaluation import Evaluator


def _evaluator(config, ds, n_dev: int) -> Evaluator:
    mesh = parallel.data_mesh(n_dev) if n_dev > 1 else None
    return Evaluator.from_config(ds, config.eval, mesh=mesh)


def train_and_evaluate(
    config,
    workdir: str,
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> dict:
    """Fits ``config.method`` (resumably in ``workdir``), then scores it with the baselines."""
    if config.distributed:  # first: nothing may touch the XLA backend before it
        parallel.initialize_distributed(coordinator_address, num_processes, process_id)
    methods.validate(config)
    files.check_workdir(workdir)
    method = methods.get(config.method)
    ds = sources.load(config.data)
    ds.qrels_for(config.eval.split)  # the scoring split exists: checked before training
    n_dev = config.mesh.num_devices or jax.device_count()
    resolved = method.resolve(config)
    if method.seeded:  # a trained method: bad trainer fields fail before anything compiles
        checks.validate_trainer_config(resolved, ds, n_dev)
    print(
        f"{ds.name}: {len(ds.corpus_ids)} docs, {ds.dim}-d {ds.encoder}; method {config.method}, "
        f"ladder {tuple(config.ladder)}, {n_dev} device(s) [{jax.default_backend()}]",
        flush=True,
    )
    start = time.perf_counter()
    fitted = method.fit(config, ds, workdir)
    print(f"trained in {time.perf_counter() - start:.1f}s; validation nDCG@10: {fitted.val_ndcg}")
    comps = {m: methods.get(m).fit(config, ds).compressor for m in config.eval.methods}
    comps[config.method] = fitted.compressor
    evaluator = _evaluator(config, ds, n_dev)
    results = evaluator.evaluate(comps, config.ladder)
    doc = reporting.results_document(ds, evaluator.split, results, evaluator.n_unseen)
    if jax.process_index() == 0:  # every process scored; one writes
        files.atomic_write(Path(workdir) / "config.json", resolved.to_json(indent=1) + "\n")
        reporting.report(doc, workdir)
        if isinstance(fitted.compressor, export_lib.NestedCompressor):
            print(f"wrote {export_lib.save(fitted.compressor, Path(workdir) / 'compressor.npz')}")
    return doc


def evaluate(config, workdir: str) -> dict:
    """Fits ``config.eval.methods``, scores them at every ladder size, writes the report."""
    methods.validate(config)
    files.check_workdir(workdir)
    ds = sources.load(config.data)
    ds.qrels_for(config.eval.split)
    ladder = tuple(int(d) for d in config.ladder)
    if ladder[0] > ds.dim:
        raise ValueError(f"ladder {ladder} starts above the embedding size {ds.dim}")
    fitted = {m: methods.get(m).fit(config, ds).compressor for m in config.eval.methods}
    evaluator = _evaluator(config, ds, jax.device_count())
    start = time.perf_counter()
    results = evaluator.evaluate(fitted, ladder)
    print(
        f"scored {len(fitted)} methods x {len(ladder)} sizes in {time.perf_counter() - start:.2f}s"
    )
    doc = reporting.results_document(ds, evaluator.split, results, evaluator.n_unseen)
    reporting.report(doc, workdir)
    return doc


def export(config, workdir: str, out: str | None = None) -> Path:
    """Writes the nested compressor of the finished run in ``workdir`` (no retraining)."""
    methods.validate(config)
    if not workdir or not (Path(workdir) / "checkpoints").is_dir():
        raise ValueError(f"no checkpoints in {workdir}; train first with launch.train")
    ds = sources.load(config.data)
    fitted = methods.get(config.method).fit(config, ds, workdir, verbose=False)
    if not isinstance(fitted.compressor, export_lib.NestedCompressor):
        raise ValueError(f"method {config.method!r} has no nested compressor to export")
    path = export_lib.save(fitted.compressor, out or Path(workdir) / "compressor.npz")
    print(f"wrote {path} (sizes {fitted.compressor.sizes})")
    return path


def prepare(config, out: str) -> Path:
    """Packages the config's dataset as a tfds array_record dataset in ``out``."""
    from smec_jax import tfds_dataset

    methods.validate(config)
    files.check_workdir(out, "--out")
    rd = sources.load(config.data)
    path = tfds_dataset.write_tfds(rd, out)
    print(f"wrote {rd.name} ({len(rd.corpus_ids)} docs, splits {sorted(rd.qrels)}) to {path}")
    return path


def embed(
    beir_dir: str,
    model: str,
    out: str | None = None,
    *,
    batch_size: int = 32,
    chunk: int = 512,
    dtype: str = "float16",
    device: str = "cpu",
) -> Path:
    """Embeds a BEIR folder with a sentence-transformers model (resumable by chunks)."""
    from smec_jax import encode

    model_path = encode.resolve_model(model)
    name = Path(model).name if Path(model).exists() else model
    out = out or str(Path(beir_dir) / "embeddings" / name)
    fn = encode.sentence_transformer_encoder(model_path, batch_size, device)
    path = encode.encode_beir(beir_dir, out, fn, model_name=name, chunk=chunk, dtype=dtype)
    print(f"wrote {path}")
    return path
