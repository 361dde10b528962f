"""The reproduction: every method x seed through one path, mean ± std, resumable per run.

:func:`run` fits each registered method (closed-form ones once, trained ones per seed) with
the same data, step budget and validation split, scores each with the same
:class:`~smec_jax.evaluation.evaluator.Evaluator`, and writes ``results.json`` (``<metric>_std``
beside each mean), ``report.md`` and ``ndcg_vs_dim.png``. Each (method, seed) result is
cached in ``workdir/runs/<method>-s<seed>/results.json`` with the config that produced it,
and its per-query test nDCG@10 beside it (``per_query.npz``); a rerun resumes from the cache
and refuses one written with another config. The workdir gets every run's per-query scores
in one ``per_query.npz`` and, in ``results.json`` and the report, each method's difference
from PCA with a paired bootstrap 95% interval over queries and seeds (all and unseen
queries). Test qrels are read only to score finished models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from smec_jax import files, interrupts, methods, parallel
from smec_jax.datasets import sources
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation import reporting, stats
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.progress import eta

# Config fields added after runs were first cached, each with the value that reproduces the
# behaviour from before it existed: a cached run whose config lacks such a field still
# matches while the current config keeps that value (so adding an option that is off by
# default does not throw away every cached run).
ADDED_FIELDS = {
    "csr.aux_k": 0,
    "csr.aux_weight": 1 / 32,
    "csr.dead_steps": 50,
    "train.code_lr": 3e-4,
    "train.distill_source_weight": 0.0,
    "train.log_share": 0.0,
    "train.lr_decay": "constant",
}


def config_matches(cached: dict, current: dict) -> bool:
    """Whether a cached run's config is ``current``, up to :data:`ADDED_FIELDS` that the
    cached one lacks and ``current`` holds at their old-behaviour values."""
    current = json.loads(json.dumps(current))  # a copy
    for dotted, value in ADDED_FIELDS.items():
        *path, leaf = dotted.split(".")
        node, old = current, cached
        for part in path:
            node, old = node.get(part, {}), (old or {}).get(part)
        if isinstance(old, dict) and leaf not in old and node.get(leaf) == value:
            node.pop(leaf)
    return cached == current


def ablation_rows() -> list[str]:
    """The ablation table's rows: the ablations, then full SMEC."""
    return methods.names(group="ablation") + ["smec"]


def default_evaluator(config, ds: RetrievalData) -> Evaluator:
    """The config's evaluator, with the corpus sharded over every device when there are
    several."""
    mesh = parallel.data_mesh() if jax.device_count() > 1 else None
    return Evaluator.from_config(ds, config.eval, mesh=mesh)


def run_one(
    config,
    ds: RetrievalData,
    method: str,
    seed: int,
    workdir: Path,
    evaluator: Evaluator | None = None,
) -> tuple[dict, np.ndarray]:
    """(size -> metrics, (sizes, queries) per-query test nDCG@10) of one (method, seed),
    cached in ``workdir/results.json`` and ``workdir/per_query.npz``."""
    cfg = config.copy_and_resolve_references()
    cfg.method, cfg.seed = method, seed
    fingerprint = json.loads(cfg.to_json(sort_keys=True))
    cached, pq_path = workdir / "results.json", workdir / "per_query.npz"
    if cached.is_file() and pq_path.is_file():
        doc = json.loads(cached.read_text())
        if not config_matches(doc.get("config"), fingerprint):
            raise ValueError(
                f"{cached} was written with another config (or by an older version); "
                "use a fresh --workdir or delete that run folder"
            )
        with np.load(pq_path, allow_pickle=False) as f:
            return doc["results"][method], f["ndcg@10"]
    fitted = methods.get(method).fit(cfg, ds, workdir / "train")
    evaluator = evaluator or default_evaluator(cfg, ds)
    per_query: dict = {}
    res = evaluator.evaluate({method: fitted.compressor}, cfg.ladder, per_query)
    save_per_query(
        pq_path, evaluator.qids, cfg.ladder, {"ndcg@10": per_query[method]}, evaluator.unseen_mask
    )
    doc = reporting.results_document(ds, evaluator.split, res) | {"config": fingerprint}
    reporting.write_results(workdir, doc)
    return res[method], per_query[method]


def save_per_query(path: Path, qids, sizes, arrays: dict, unseen=None) -> None:
    """Per-query scores with the query ids, the sizes they belong to and (where given) the
    unseen-query mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {} if unseen is None else {"unseen": np.asarray(unseen)}
    with files.atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, qids=np.asarray(qids), sizes=np.asarray(sizes), **extra, **arrays)


def versus(per_query: dict, unseen: np.ndarray, sizes, base: str = "pca") -> dict:
    """method -> size -> {"all", "unseen"} paired bootstrap interval of the method's mean
    test nDCG@10 minus ``base``'s; per_query: method -> (seeds, sizes, queries)."""
    if base not in per_query:
        return {}
    out: dict = {}
    for name, a in per_query.items():
        if name == base:
            continue
        out[name] = {}
        for i, size in enumerate(sizes):
            cell = {"all": stats.paired_bootstrap(a[:, i], per_query[base][:, i])}
            if np.any(unseen):
                cell["unseen"] = stats.paired_bootstrap(
                    a[:, i][:, unseen], per_query[base][:, i][:, unseen]
                )
            out[name][str(size)] = cell
    return out


def write_report(doc: dict, workdir: str | Path, seeds: Sequence[int]) -> None:
    reporting.report(doc, workdir)
    files.atomic_write(
        Path(workdir) / "report.md", reporting.reproduction_markdown(doc, seeds, ablation_rows())
    )
    print(f"wrote {workdir}/report.md")


def report_only(workdir: str | Path, seeds: Sequence[int]) -> dict:
    """Rewrites report.md and the plot from ``workdir/results.json``; trains nothing."""
    path = Path(workdir) / "results.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: run launch.reproduce without --report_only first")
    doc = json.loads(path.read_text())
    write_report(doc, workdir, seeds)
    return doc


def run(config, workdir: str | Path, method_names: Sequence[str], seeds: Sequence[int]) -> dict:
    """Every (method, seed), then the aggregated report; returns the results document."""
    methods.validate(config)
    files.check_workdir(workdir)
    for name in method_names:
        methods.get(name)  # unknown names fail before anything trains
    ds = sources.load(config.data)
    evaluator = default_evaluator(config, ds)
    jobs = [(m, s) for m in method_names for s in (seeds if methods.get(m).seeded else seeds[:1])]
    start, per_method, per_query = time.perf_counter(), {}, {}
    for i, (method, seed) in enumerate(jobs):
        elapsed = time.perf_counter() - start
        print(
            f"[{i + 1}/{len(jobs)}] {method} seed {seed} | {elapsed:.0f}s elapsed, "
            f"ETA {eta(elapsed, i, len(jobs))}",
            flush=True,
        )
        run_dir = Path(workdir) / "runs" / f"{method}-s{seed}"
        res, pq = run_one(config, ds, method, seed, run_dir, evaluator)
        interrupts.point("reproduce-run-done", i)
        per_method.setdefault(method, []).append(res)
        per_query.setdefault(method, []).append(pq)
    doc = reporting.results_document(
        ds,
        evaluator.split,
        {m: reporting.aggregate(r) for m, r in per_method.items()},
        evaluator.n_unseen,
    )
    stacked = {m: np.stack(v) for m, v in per_query.items()}  # (seeds, sizes, queries)
    doc["vs_pca"] = versus(stacked, evaluator.unseen_mask, config.ladder)
    save_per_query(
        Path(workdir) / "per_query.npz",
        evaluator.qids,
        config.ladder,
        {"names": np.asarray(list(stacked))} | {f"p{i}": v for i, v in enumerate(stacked.values())},
        evaluator.unseen_mask,
    )
    write_report(doc, workdir, seeds)
    return doc
