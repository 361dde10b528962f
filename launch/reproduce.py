"""Train every method over several seeds on one dataset and write the comparison report.

  python -m launch.reproduce [--config configs/default.py] --workdir DIR \
      [--methods smec,mrl,...] [--seeds 0,1,2]

Every method goes through the same data, step budget (the config's) and evaluation; each
(method, seed) result is kept in DIR/runs/ so a rerun resumes where it stopped. Writes
DIR/results.json (the usual format, with ``<metric>_std`` beside each mean), DIR/report.md
(main table, ablation table, all and unseen queries) and DIR/ndcg_vs_dim.png. Test qrels
are read only to score finished models.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import jax
from absl import flags

from launch import common
from smec_jax import compressors, data, evaluation, parallel, train

FLAGS = flags.FLAGS
common.define_config_and_workdir("runs/reproduce")
# Baselines, the control, peers, SMEC, label-free methods, then the ablations.
DEFAULT_METHODS = (
    "truncate",
    "pca",
    "doc_prior",
    "search_adaptor",
    "matryoshka_adaptor",
    "smec",
    "matryoshka_adaptor_unsup",
    "smec_unsup",
    "mrl",
    "mrl_smrl",
    "mrl_ads",
    "mrl_sxbm",
)
flags.DEFINE_list("methods", list(DEFAULT_METHODS), "Methods to compare.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (training methods only; baselines are exact).")
flags.DEFINE_bool(
    "report_only",
    False,
    "Rewrite report.md and the plot from DIR/results.json (what an earlier run measured); "
    "trains and scores nothing.",
)

ABLATION_ROWS = ("mrl", "mrl_smrl", "mrl_ads", "mrl_sxbm", "smec")
BASELINES = set(compressors.METHODS)  # fitted in closed form, no seed


def run_one(config, ds, method: str, seed: int, workdir: Path) -> dict:
    """Results of one (method, seed), cached in ``workdir/results.json``."""
    cfg = config.copy_and_resolve_references()
    cfg.method, cfg.seed = method, seed
    fingerprint = cfg.to_json(sort_keys=True)
    cached = workdir / "results.json"
    if cached.is_file():
        doc = json.loads(cached.read_text())
        if doc.get("config") != json.loads(fingerprint):
            raise ValueError(
                f"{cached} was written with another config (or by an older version); "
                "use a fresh --workdir or delete that run folder"
            )
        return doc["results"][method]
    if method in BASELINES:
        comp = compressors.fit_method(method, ds, cfg.ladder, cfg)
    else:
        comp, _ = train.fit(cfg, ds, workdir / "train", verbose=True)
    mesh = parallel.data_mesh() if jax.device_count() > 1 else None
    res = evaluation.evaluate(ds, {method: comp}, cfg.ladder, split=cfg.eval.split, mesh=mesh)
    doc = evaluation.results_document(ds, cfg.eval.split, res) | {"config": json.loads(fingerprint)}
    evaluation.write_results(workdir, doc)
    return res[method]


def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds with ``<metric>_std`` (0 for a single run) for every size and metric."""
    out = {}
    for size in per_seed[0]:
        row = {}
        for metric in per_seed[0][size]:
            vals = [r[size][metric] for r in per_seed]
            row[metric] = statistics.mean(vals)
            row[f"{metric}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out[size] = row
    return out


def markdown(doc: dict, seeds: list[int], metric: str = "ndcg@10") -> str:
    results = doc["results"]
    sizes = sorted({int(s) for r in results.values() for s in r}, reverse=True)

    def table(methods, suffix):
        head = "| method | " + " | ".join(str(s) for s in sizes) + " |"
        lines = [head, "|" + "---|" * (len(sizes) + 1)]
        for m in methods:
            cells = []
            for s in sizes:
                v = results[m].get(str(s), {})
                mean, std = v.get(metric + suffix), v.get(f"{metric}{suffix}_std")
                cells.append("-" if mean is None else f"{mean:.4f} ± {std:.4f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    ablations = [m for m in ABLATION_ROWS if m in results]
    parts = [
        f"# {doc['dataset']} ({doc['encoder']}), {doc['split']} split, {metric}",
        f"Mean ± std over seeds {seeds} (closed-form baselines: one fit). Unseen queries: test "
        "queries none of whose relevant documents is judged relevant for a training query.",
        "## All test queries",
        table(list(results), ""),
        "## Unseen test queries",
        table(list(results), "_unseen"),
    ]
    if ablations:
        parts += ["## Ablations (all / unseen)", table(ablations, ""), table(ablations, "_unseen")]
    return "\n\n".join(parts) + "\n"


def write_report(doc: dict, workdir: str, seeds: list[int]) -> None:
    evaluation.report(doc, workdir)
    evaluation.atomic_write(Path(workdir) / "report.md", markdown(doc, seeds))
    print(f"wrote {workdir}/report.md")


def report_only(workdir: str, seeds: list[int]) -> dict:
    path = Path(workdir) / "results.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: run launch.reproduce without --report_only first")
    doc = json.loads(path.read_text())
    write_report(doc, workdir, seeds)
    return doc


def run(config, workdir: str, methods: list[str], seeds: list[int]) -> dict:
    ds = data.load_from_config(config.data)
    unknown = set(methods) - BASELINES - set(train.METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}")
    jobs = [(m, s) for m in methods for s in (seeds if m not in BASELINES else seeds[:1])]
    start, per_method = time.perf_counter(), {}
    for i, (method, seed) in enumerate(jobs):
        elapsed = time.perf_counter() - start
        eta = elapsed / i * (len(jobs) - i) if i else float("nan")
        print(
            f"[{i + 1}/{len(jobs)}] {method} seed {seed} | {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
            flush=True,
        )
        res = run_one(config, ds, method, seed, Path(workdir) / "runs" / f"{method}-s{seed}")
        per_method.setdefault(method, []).append(res)
    doc = evaluation.results_document(
        ds, config.eval.split, {m: aggregate(r) for m, r in per_method.items()}
    )
    write_report(doc, workdir, seeds)
    return doc


if __name__ == "__main__":
    common.run_main(
        lambda: (
            report_only(FLAGS.workdir, [int(x) for x in FLAGS.seeds])
            if FLAGS.report_only
            else run(FLAGS.config, FLAGS.workdir, FLAGS.methods, [int(x) for x in FLAGS.seeds])
        )
    )
