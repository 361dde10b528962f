"""``method="auto"``: the candidates our reports support for what you supplied, each fitted,
scored on a held-out validation set, and the best kept, with the table beside the choice.

What you supplied decides the candidates and the validation:

=======================  ====================================================  ==========================================
you have                 candidates                                            validation (never trained on)
=======================  ====================================================  ==========================================
judgments (``train``)    smec_distill, smec, distill_pseudo (texts and their   nDCG@10 on held-out training queries none
                         encoder at hand) or distill_docs, pca, truncate       of whose relevant documents training sees
                                                                               (the trainer's own validation split)
a query log, no          distill_pseudo_log (the log, and pseudo-queries or    top-10 agreement with the full-size ranking
judgments                the documents as queries), distill_docs, pca,         on a held-out fifth of the log
                         truncate
documents alone          distill_docs, pca, truncate                           top-10 agreement on held-out documents used
                                                                               as queries, left out of the fitted corpus
=======================  ====================================================  ==========================================

Where the texts are at hand (a BEIR folder with ``corpus.jsonl``), ``distill_pseudo`` joins
the label-free lists (before ``distill_docs``).

The score is the mean over the compressed sizes (every ladder size but the first, the
original). With a byte budget (``auto.budget_bytes``, ``fit(..., budget_bytes=)``) each
candidate is scored instead at every (size, precision) code that fits the budget
(:data:`BUDGET_PRECISIONS`, float queries against the coded documents, calibrated on the
corpus), its score is its best such code, and the choice comes with that code
(:attr:`Choice.point`). A candidate that cannot run here (no texts or encoder for pseudo-queries) is
listed with the reason and skipped. The trained candidates with judgments early-stop on the
same validation queries, which favours them slightly against the closed-form ones.
Without judgments the chosen compressor is the one fitted without the held-out rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from smec_jax import files, parallel
from smec_jax.core import codes
from smec_jax.datasets import pseudo_queries
from smec_jax.datasets.data import DataError, RetrievalData
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.evaluation.fidelity import agreement_at, full_top
from smec_jax.methods.registry import Fitted, apply_overrides, get, names
from smec_jax.training import batches
from smec_jax.training.splits import split_train_val

NAME = "auto"
MIN_LOG = 20  # fewer logged queries than this: validated on held-out documents instead
MAX_VAL = 1000  # held-out queries at most (log or documents)
K = 10  # top-k agreement without judgments

JUDGED = "judgments"
LOG = "query log"
DOCS = "documents alone"
# the precisions a byte budget is spent on (float32 is float16's size at twice the bytes;
# binary_itq, not median binary: the rotation loses less, and its codes no longer nest)
BUDGET_PRECISIONS = ("float16", "int8", "int4", "int2", "binary_itq")


def budget_points(sizes, budget: int) -> list[tuple[int, str]]:
    """The (size, precision) codes of ``sizes`` that take at most ``budget`` bytes; refuses,
    in one line, a budget below every code."""
    pts = [
        (int(d), p)
        for d in sizes
        for p in BUDGET_PRECISIONS
        if codes.bytes_per_vector(p, int(d)) <= budget
    ]
    if not pts:
        least = min(codes.bytes_per_vector(p, int(d)) for d in sizes for p in BUDGET_PRECISIONS)
        raise DataError(
            f"auto.budget_bytes={budget}: no code of sizes {list(sizes)} fits (the smallest "
            f"takes {least} B); raise the budget or add a smaller size"
        )
    return pts


def point_label(size: int, precision: str) -> str:
    return f"{size}-d {precision}"


@dataclasses.dataclass(frozen=True)
class Choice:
    """What ``auto`` chose and why.

    Attributes:
      name: the chosen method. fitted: its fit.
      situation: judgments | query log | documents alone.
      metric: what the table holds. validation: which queries it was measured on.
      table: per candidate, ``{"sizes": {size: score}, "mean": score}``; with a byte budget
        ``{"points": {"<size>-d <precision>": score}, "best": label, "score": score}``; or
        ``{"skipped": why}``.
      point: with a byte budget, the chosen candidate's best code: ``{"size", "precision",
        "bytes", "bytes_budget"}``; else None.
    """

    name: str
    fitted: Fitted
    situation: str
    metric: str
    validation: str
    table: dict[str, dict]
    fits: dict[str, Fitted] = dataclasses.field(default_factory=dict)  # every candidate fitted
    point: dict | None = None

    def summary(self) -> str:
        """The table as text, the choice last."""
        key, total = ("points", "best") if self.point else ("sizes", "mean")
        cols = next(iter(r[key] for r in self.table.values() if key in r), {})
        width = max([8] + [len(c) + 2 for c in cols])
        head = f"{'candidate':<22}" + "".join(f"{c:>{width}}" for c in cols) + f"{total:>8}"
        lines = [f"auto ({self.situation}): {self.metric} on {self.validation}", head]
        for name, r in self.table.items():
            if "skipped" in r:
                lines.append(f"{name:<22}  skipped: {r['skipped']}")
                continue
            mark = "  <- chosen" if name == self.name else ""
            cells = "".join(f"{r[key][c]:>{width}.4f}" for c in r[key])
            lines.append(f"{name:<22}{cells}{_score(r):>8.4f}{mark}")
        if self.point:
            p = self.point
            lines.append(
                f"auto chose {self.name} at {point_label(p['size'], p['precision'])} "
                f"({p['bytes']} B per document): the highest {self.metric} of any code "
                f"within the budget"
            )
        else:
            lines.append(f"auto chose {self.name}: the highest mean {self.metric} over the sizes")
        return "\n".join(lines)

    def to_json(self) -> dict:
        out = {
            "chosen": self.name,
            "situation": self.situation,
            "metric": self.metric,
            "validation": self.validation,
            "table": self.table,
        }
        if self.point:
            out["point"] = self.point
        return out


def _score(row: dict) -> float:
    """What a candidate's table row is chosen by: its mean over the sizes, or, with a byte
    budget, its best code's score."""
    return row["score"] if "points" in row else row["mean"]


def situation(data: RetrievalData, split: str = "train") -> str:
    """JUDGED (``split`` judgments), LOG (at least :data:`MIN_LOG` queries that no split
    judges: test queries are never a log) or DOCS."""
    if split in data.qrels:
        return JUDGED
    if len(batches.unjudged_queries(data)) >= MIN_LOG:
        return LOG
    return DOCS


def _has_texts(data: RetrievalData) -> bool:
    return bool(data.source_dir) and (Path(data.source_dir) / "corpus.jsonl").is_file()


def candidates(data: RetrievalData, split: str = "train") -> list[str]:
    """The candidate methods for ``data`` (see the module docstring), in table order."""
    s = situation(data, split)
    texts = _has_texts(data)
    if s == JUDGED:
        return [
            "smec_distill",
            "smec",
            "distill_pseudo" if texts else "distill_docs",
            "pca",
            "truncate",
        ]
    pseudo = ["distill_pseudo"] if texts else []
    if s == LOG:
        return ["distill_pseudo_log", *pseudo, "distill_docs", "pca", "truncate"]
    return [*pseudo, "distill_docs", "pca", "truncate"]


def _subset(data: RetrievalData, doc_rows=None, query_rows=None) -> RetrievalData:
    out = data
    if doc_rows is not None:
        out = dataclasses.replace(
            out, corpus=data.corpus[doc_rows], corpus_ids=[data.corpus_ids[i] for i in doc_rows]
        )
    if query_rows is not None:
        out = dataclasses.replace(
            out, queries=data.queries[query_rows], query_ids=[data.query_ids[i] for i in query_rows]
        )
    return out


def _split_rows(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, held-out rows), each sorted: ``share`` of ``n`` held out, at least one and
    at most :data:`MAX_VAL`."""
    n_val = int(min(MAX_VAL, max(1, round(share * n))))
    perm = np.random.default_rng(seed + 11).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def choose(cfg, data: RetrievalData, workdir=None, *, verbose: bool = True) -> Choice:
    """Fits every candidate of ``data`` (checkpoints under ``workdir/auto/<name>``, so a
    rerun resumes), scores each on the validation set, returns the best (ties: the earlier
    candidate, the table's order) and writes ``workdir/auto.json``."""
    sizes = [int(d) for d in cfg.ladder[1:]] or [int(cfg.ladder[0])]
    budget = int(cfg.auto.budget_bytes)
    # (size, precision) codes scored: every size at float32, or the codes within the budget
    pts = budget_points(sizes, budget) if budget else [(d, "float32") for d in sizes]
    s = situation(data, cfg.train.split)
    fit_data = data
    if s == JUDGED:
        vs = split_train_val(
            data, cfg.train.split, cfg.train.val_fraction, cfg.seed, cfg.train.val_split
        )
        evaluator = Evaluator.from_config(
            data, cfg.eval, split=cfg.train.split, mesh=parallel.local_mesh()
        )
        metric = "validation nDCG@10"
        validation = f"{len(vs.val)} held-out training queries ({vs.strategy})"

        def score(comp, d, p):
            scoring = "symmetric" if p == "float32" else "asymmetric"
            return float(evaluator.per_query(comp, d, vs.val, p, scoring)["ndcg@10"].mean())

    elif s == LOG:
        log_rows = data.query_rows(batches.unjudged_queries(data))
        _, val = _split_rows(len(log_rows), 0.2, cfg.seed)
        others = np.setdiff1d(np.arange(len(data.query_ids)), log_rows[val])
        fit_data = _subset(data, query_rows=others)  # the log without its held-out fifth
        metric, validation = f"validation top-{K} agreement", f"{len(val)} held-out logged queries"
        val_q, corpus = data.queries[log_rows[val]], data.corpus

    else:
        keep, val = _split_rows(len(data.corpus_ids), 0.1, cfg.seed)
        fit_data = _subset(data, doc_rows=keep)
        metric = f"validation top-{K} agreement"
        validation = f"{len(val)} held-out documents as queries (left out of the fitted corpus)"
        val_q, corpus = data.corpus[val], fit_data.corpus

    if s != JUDGED:
        full = full_top(corpus, val_q, K)  # once: every candidate and code compares with it

        def score(comp, d, p):
            return agreement_at(comp, corpus, val_q, [d], K, precision=p, full=full)[str(d)]

    table: dict[str, dict] = {}
    fits: dict[str, Fitted] = {}
    names = candidates(data, cfg.train.split)
    for i, name in enumerate(names):
        method = get(name)
        run_cfg = cfg
        if not _has_texts(data) and name == "distill_pseudo_log":  # the documents as queries
            run_cfg = apply_overrides(cfg, {"data.pseudo_rule": pseudo_queries.DOCUMENTS})
        sub = Path(workdir) / NAME / name if workdir and method.seeded else None
        if verbose:
            print(f"auto: fitting candidate {i + 1}/{len(names)}, {name}", flush=True)
        try:
            fitted = method.fit(run_cfg, fit_data, sub, verbose=verbose)
        except DataError as e:  # e.g. no texts or encoder for pseudo-queries
            table[name] = {"skipped": str(e)}
            continue
        fits[name] = fitted
        if budget:
            by_point = {point_label(d, p): score(fitted.compressor, d, p) for d, p in pts}
            best = max(by_point, key=lambda lb: (by_point[lb], -list(by_point).index(lb)))
            table[name] = {"points": by_point, "best": best, "score": by_point[best]}
        else:
            by_size = {str(d): score(fitted.compressor, d, p) for d, p in pts}
            table[name] = {"sizes": by_size, "mean": float(np.mean(list(by_size.values())))}
    if not fits:
        raise DataError(
            "auto: no candidate could be fitted: "
            + "; ".join(f"{n}: {r['skipped']}" for n, r in table.items())
        )
    best = max(fits, key=lambda n: (_score(table[n]), -list(table).index(n)))
    point = None
    if budget:
        d, p = pts[list(table[best]["points"]).index(table[best]["best"])]
        point = {
            "size": d,
            "precision": p,
            "bytes": codes.bytes_per_vector(p, d),
            "bytes_budget": budget,
        }
    choice = Choice(best, fits[best], s, metric, validation, table, fits, point)
    if workdir:
        files.write_json(Path(workdir) / "auto.json", choice.to_json())
    if verbose:
        print(choice.summary(), flush=True)
    return choice


FREE = ("pca", "truncate")  # the free candidates: what the budget's choice must beat


def budget_on_test(choice: Choice, evaluator: Evaluator) -> dict:
    """After the choice (nothing here feeds back into it): each fitted candidate at its
    validation-best code within the budget, scored on ``evaluator``'s queries (nDCG@10, all
    and unseen), and the chosen code against the best free code (the free candidate with the
    higher validation score) with paired 95% intervals."""
    from smec_jax.evaluation import stats

    mask = np.asarray(evaluator.unseen_mask, bool)
    rows, per_query = {}, {}
    for name in choice.fits:
        label = choice.table[name]["best"]
        size, precision = label.split("-d ")
        pq = evaluator.per_query(
            choice.fits[name].compressor, int(size), None, precision, "asymmetric"
        )["ndcg@10"]
        per_query[name] = pq
        rows[name] = {"point": label, "all": float(pq.mean())}
        if mask.any():
            rows[name]["unseen"] = float(pq[mask].mean())
    out = {"budget_bytes": choice.point["bytes_budget"], "chosen": choice.name, "candidates": rows}
    free = [n for n in FREE if n in choice.fits]
    if free and choice.name not in FREE:
        best_free = max(free, key=lambda n: choice.table[n]["score"])
        mine, theirs = per_query[choice.name], per_query[best_free]
        v = {"all": stats.paired_bootstrap(mine, theirs)}
        if mask.any():
            v["unseen"] = stats.paired_bootstrap(mine[mask], theirs[mask])
        out["versus"] = {"method": best_free, "point": rows[best_free]["point"], **v}
    return out


LABEL_FREE_GROUPS = ("baseline", "label_free")


def label_free_ok(name: str, data: RetrievalData, split: str = "train") -> bool:
    """Whether ``name`` can train on ``data``: it has ``split`` judgments, or the method
    needs none."""
    return split in data.qrels or name == NAME or get(name).group in LABEL_FREE_GROUPS


def check_judgments(name: str, data: RetrievalData, split: str = "train") -> None:
    """Refuses, in one line, a method that needs judgments on data that has none."""
    if not label_free_ok(name, data, split):
        free = [n for g in LABEL_FREE_GROUPS for n in names(g)]
        raise DataError(
            f"{data.name} has no {split!r} judgments, so only label-free methods train; "
            f"{name} needs them. Use --config.method=auto or one of: {', '.join(free)}"
        )


def fit_any(cfg, data: RetrievalData, workdir=None, *, verbose: bool = True):
    """``(name, Fitted, Choice or None)`` of ``cfg.method``: a registered method, or
    ``auto`` (:func:`choose`) whose ``name`` is the chosen one."""
    check_judgments(cfg.method, data, cfg.train.split)
    if cfg.method == NAME:
        choice = choose(cfg, data, workdir, verbose=verbose)
        return choice.name, choice.fitted, choice
    return cfg.method, get(cfg.method).fit(cfg, data, workdir, verbose=verbose), None
