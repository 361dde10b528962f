"""Query log: does distilling on a log of past queries help the queries of tomorrow?

``distill_pseudo_log`` adds the training queries (judgments unread) to the pseudo-queries
of ``distill_pseudo``, as ``train.log_share`` of the distillation queries. This analysis
chooses that share on training judgments only, and shows where it helps:

The judged training queries are split at random into two halves (seeded). For each share
(0 = ``distill_pseudo``, no log) and each half, the method is fitted with that half as its
query log, and the other half is scored on its training judgments. The scored queries fall
in two groups: those sharing a relevant document with a log query ("log topics": like the
seen test queries) and those sharing none ("new topics": like the unseen test queries).
Each share's difference from share 0 gets a paired bootstrap 95% interval over the queries
of each group. The first of ``seeds`` sets the halves and the training seed. Test qrels
are never read. Per-query scores go to
``workdir/query_log_per_query.npz`` (``share_<s>``: (sizes, queries); ``unseen``: the
new-topic mask); the figure to ``query_log.png``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from smec_jax import files, methods
from smec_jax.datasets import pseudo_queries
from smec_jax.evaluation import reporting, stats
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.studies.reproduction import config_matches, save_per_query
from smec_jax.training import train

GROUPS = ("log topics", "new topics")


def halves(ds, seed: int) -> tuple[list[str], list[str]]:
    """The judged training queries in two random halves (``seed``)."""
    qids = ds.judged_queries("train")
    perm = np.random.default_rng([seed, 41]).permutation(len(qids))
    cut = len(qids) // 2
    return sorted(qids[i] for i in perm[:cut]), sorted(qids[i] for i in perm[cut:])


def on_log_topics(ds, scored: list[str], log: list[str]) -> np.ndarray:
    """True where a scored query shares a relevant training document with a log query: not
    "unseen" (``RetrievalData.unseen_queries``) with the log as the training split."""
    qrels = ds.qrels["train"]
    halves = {"held": {q: qrels[q] for q in scored}, "log": {q: qrels[q] for q in log}}
    new = set(dataclasses.replace(ds, qrels=halves).unseen_queries("held", "log"))
    return np.array([q not in new for q in scored])


def with_log(ds, log: list[str]):
    """``ds`` whose training split holds only the ``log`` queries: those are the queries
    the method reads (it reads no judgment); nothing else changes."""
    train = {q: ds.qrels["train"][q] for q in log}
    return dataclasses.replace(ds, qrels={**ds.qrels, "train": train})


def method_config(config, share: float, seed: int = 0):
    """``distill_pseudo_log`` at ``share``; at 0, ``distill_pseudo`` (pseudo-queries only)."""
    cfg = methods.get("distill_pseudo_log").resolve(config)
    cfg.seed, cfg.train.log_share = seed, float(share)
    if not share:
        cfg.method, cfg.train.unlabelled_queries = "distill_pseudo", "pseudo"
    return cfg


def fit_and_score(
    config, ds, ev: Evaluator, share: float, seed: int, log, scored, run_dir: Path
) -> np.ndarray:
    """(sizes, scored queries) training nDCG@10 (``ev``) of the method at ``share``, fitted
    with ``log`` as its query log; cached in ``run_dir`` (refused if another config wrote it)."""
    cfg = method_config(config, share, seed)
    fingerprint = json.loads(cfg.to_json(sort_keys=True))
    path, config_path = run_dir / "per_query.npz", run_dir / "config.json"
    if config_path.is_file():
        if not config_matches(json.loads(config_path.read_text()), fingerprint):
            raise ValueError(
                f"{run_dir} was written with another config; use a fresh --workdir or "
                "delete that folder"
            )
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                return f["ndcg@10"]
    files.write_json(config_path, fingerprint)
    comp = train.train(cfg, with_log(ds, log), run_dir / "train", verbose=False).compressor
    scores = np.stack([ev.per_query(comp, d, scored)["ndcg@10"] for d in config.ladder])
    save_per_query(path, scored, config.ladder, {"ndcg@10": scores})
    return scores


def plot(doc: dict, path: Path) -> None:
    plt = reporting.pyplot()
    shares = [float(s) for s in doc["shares"]]
    sizes = [d for d in doc["sizes"] if d <= 128]
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(11, 4), sharey=True)
    for ax, group in zip(axes, GROUPS, strict=True):
        for d in sizes:
            ys = [doc["means"][group][str(s)][str(d)] for s in doc["shares"]]
            ax.plot(shares, ys, marker="o", label=f"{d} dims")
        ax.set_title(f"held-out training queries on {group} (n={doc['counts'][group]})")
        ax.set_xlabel("train.log_share (0 = distill_pseudo)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("nDCG@10 (training judgments)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    reporting.save_figure(fig, path)


def run(config, ds, workdir: Path, progress, log_shares=(0.0, 0.25, 0.5), seeds=(0,)) -> dict:
    if "train" not in ds.qrels:
        raise ValueError(
            f"{ds.name} has no training queries to split into a log and a held-out half"
        )
    ds = pseudo_queries.attach_for(method_config(config, 0.5), ds)
    shares = [0.0, *sorted({float(s) for s in log_shares} - {0.0})]
    seed = int(seeds[0])
    folds = halves(ds, seed)
    # per share: (sizes, all scored queries), both halves concatenated
    scored = [*folds[1], *folds[0]]
    group = np.concatenate(
        [on_log_topics(ds, folds[1], folds[0]), on_log_topics(ds, folds[0], folds[1])]
    )
    ev, per_share = Evaluator(ds, "train"), {}
    for s in shares:
        parts = []
        for k, (log, held) in enumerate(((folds[0], folds[1]), (folds[1], folds[0]))):
            progress(f"query log: share {s}, half {k + 1}/2 ({len(log)} log queries)")
            run_dir = workdir / "analysis_runs" / "query_log" / f"share{s}-half{k}-s{seed}"
            parts.append(fit_and_score(config, ds, ev, s, seed, log, held, run_dir))
        per_share[s] = np.concatenate(parts, axis=1)
    sizes = [int(d) for d in config.ladder]
    masks = {GROUPS[0]: group, GROUPS[1]: ~group}
    doc = {"seed": seed, "shares": [str(s) for s in shares], "sizes": sizes,
           "counts": {g: int(m.sum()) for g, m in masks.items()}, "means": {}, "vs_none": {}}  # fmt: skip
    for g, m in masks.items():
        doc["means"][g] = {
            str(s): {str(d): float(per_share[s][i, m].mean()) for i, d in enumerate(sizes)}
            for s in shares
        }
        doc["vs_none"][g] = {
            str(s): {
                str(d): stats.paired_bootstrap(per_share[s][i, m], per_share[0.0][i, m])
                for i, d in enumerate(sizes)
            }
            for s in shares[1:]
        }
    arrays = {f"share_{s}": per_share[s] for s in shares}  # (sizes, queries) each
    save_per_query(workdir / "query_log_per_query.npz", scored, sizes, arrays, unseen=~group)
    plot(doc, workdir / "query_log.png")
    return doc


def markdown(doc: dict, config) -> str:
    del config
    shown = [d for d in doc["sizes"] if d <= 128]
    head = "| share | " + " | ".join(f"{g}, {' / '.join(map(str, shown))}" for g in GROUPS) + " |"
    lines = [head, "|---|---|---|"]
    for s in doc["shares"]:
        cells = []
        for g in GROUPS:
            vals = [f"{doc['means'][g][s][str(d)]:.3f}" for d in shown]
            if s in doc["vs_none"][g]:
                v = [doc["vs_none"][g][s][str(d)] for d in shown]
                vals = [f"{m} ({reporting.interval(x)})" for m, x in zip(vals, v, strict=True)]
            cells.append(" / ".join(vals))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n\n".join(
        [
            "## Query log (query_log.png)",
            f"`distill_pseudo_log` at each `train.log_share` (0: `distill_pseudo`), fitted with "
            f"one random half of the judged training queries as its query log and scored on "
            f"the other half with the training judgments (both halves, seed {doc['seed']}). "
            f"Log topics: held-out queries sharing a relevant document with a log query "
            f"(n={doc['counts'][GROUPS[0]]}); new topics: the others "
            f"(n={doc['counts'][GROUPS[1]]}). In brackets: the difference from share 0 with its "
            "paired bootstrap 95% interval over queries.",
            "\n".join(lines),
        ]
    )
