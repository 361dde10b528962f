"""The validation split: held-out training queries whose relevant documents training never sees.

Validation should measure what a new query gets, not how well the model remembers
documents (DESIGN.md section 3). :func:`split_train_val` carves it from the judged queries of
the training split, by whole components of "shares a relevant doc" or by holding the
validation queries' relevant documents out of training.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from smec_jax.datasets.data import Qrels, RetrievalData

log = logging.getLogger(__name__)


STRATEGIES = ("auto", "components", "doc_holdout", "random")


@dataclasses.dataclass(frozen=True)
class ValSplit:
    """A training / validation split of the judged queries of one qrels split.

    Attributes:
      train, val: query ids, in row order.
      train_qrels: the judgments training may use: those of the training queries, minus
        every judgment on a held-out document.
      held_out: corpus ids training never sees (doc_holdout: the validation queries'
        relevant documents; empty otherwise).
      strategy: components, doc_holdout or random.
      dropped: judgments of training queries removed (on held-out documents).
      lost: training queries left with no relevant judgment after the drop (not trained on).
    """

    train: list[str]
    val: list[str]
    train_qrels: Qrels
    held_out: frozenset[str]
    strategy: str
    dropped: int = 0
    lost: int = 0

    def describe(self) -> str:
        n = len(self.train) + len(self.val) + self.lost
        text = (
            f"validation split ({self.strategy}): {len(self.train)} training / "
            f"{len(self.val)} validation of {n} judged queries"
        )
        if self.strategy == "doc_holdout":
            text += (
                f"; {len(self.held_out)} held-out documents, {self.dropped} training judgments "
                f"on them dropped, {self.lost} training queries left without a relevant one"
            )
        return text


def _components(qids, qrels) -> list[list[str]]:
    """Connected components of "shares a relevant doc" (union-find), in query order."""
    parent = list(range(len(qids)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, q in enumerate(qids):
        for d, g in qrels[q].items():
            if g > 0:
                if d in owner:
                    parent[find(i)] = find(owner[d])
                else:
                    owner[d] = i
    comps: dict[int, list[str]] = {}
    for i, q in enumerate(qids):
        comps.setdefault(find(i), []).append(q)
    return list(comps.values())


def _take_groups(groups, order, target) -> set[str]:
    val: set[str] = set()
    for gi in order:
        if len(val) >= target:
            break
        val.update(groups[gi])
    return val


def _doc_holdout(qids, qrels, target, rng) -> tuple[set[str], set[str]]:
    """Validation queries whose relevant documents the fewest other queries judge, until the
    target size; their relevant documents are held out of training."""
    judged_by: dict[str, int] = {}
    for q in qids:
        for d in qrels[q]:
            judged_by[d] = judged_by.get(d, 0) + 1
    overlap = [sum(judged_by[d] - 1 for d, g in qrels[q].items() if g > 0) for q in qids]
    jitter = rng.random(len(qids))
    val: set[str] = set()
    held: set[str] = set()
    for i in sorted(range(len(qids)), key=lambda i: (overlap[i], jitter[i])):
        if len(val) >= target:
            break
        val.add(qids[i])
        held.update(d for d, g in qrels[qids[i]].items() if g > 0)
    return val, held


def _finish(qids, qrels, val, held, strategy) -> ValSplit:
    train, train_qrels, dropped, lost = [], {}, 0, 0
    for q in qids:
        if q in val:
            continue
        kept = {d: g for d, g in qrels[q].items() if d not in held}
        dropped += len(qrels[q]) - len(kept)
        if any(g > 0 for g in kept.values()):
            train.append(q)
            train_qrels[q] = kept
        else:
            lost += 1
    return ValSplit(
        train=train,
        val=[q for q in qids if q in val],
        train_qrels=train_qrels,
        held_out=frozenset(held),
        strategy=strategy,
        dropped=dropped,
        lost=lost,
    )


def split_train_val(
    data: RetrievalData, split: str, val_fraction: float, seed: int, strategy: str = "auto"
) -> ValSplit:
    """Holds out about ``val_fraction`` of the judged queries of ``split`` for validation.

    Validation should measure what a new query gets, not how well the model remembers
    documents (DESIGN.md section 3), so no validation query may have a relevant document
    that training sees judged. Strategies:

    * ``components``: queries that share a relevant doc stay on the same side (whole
      connected components go to validation). Nothing is dropped; sound when judgments are
      sparse (SciFact).
    * ``doc_holdout``: for dense judgments, where "shares a relevant doc" joins nearly every
      query into one component (NFCorpus): the queries whose relevant documents the fewest
      other queries judge go to validation, their relevant documents are held out, and every
      training judgment on a held-out document is dropped.
    * ``random``: a random query split; validation then rewards remembering documents.
    * ``auto`` (default): components if they give a usable split (training keeps at least
      90% of its share and validation half its target), else doc_holdout if training keeps
      at least 70% of the queries, else random, with a warning.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown train.val_split {strategy!r}; use one of {STRATEGIES}")
    qids = data.judged_queries(split)
    qrels = data.qrels_for(split)
    rng = np.random.default_rng(seed)
    n, target = len(qids), int(round(val_fraction * len(qids)))

    def ok(s: ValSplit, min_train: float) -> bool:
        return len(s.train) >= min_train * n and len(s.val) >= 0.5 * target

    if strategy in ("auto", "components"):
        groups = _components(qids, qrels)
        val = _take_groups(groups, rng.permutation(len(groups)), target)
        out = _finish(qids, qrels, val, set(), "components")
        if strategy == "components" or ok(out, 0.9 * (1 - val_fraction)):
            return out
    if strategy in ("auto", "doc_holdout"):
        out = _finish(qids, qrels, *_doc_holdout(qids, qrels, target, rng), "doc_holdout")
        if strategy == "doc_holdout" or ok(out, 0.7):
            return out
    groups = [[q] for q in qids]
    out = _finish(qids, qrels, _take_groups(groups, rng.permutation(n), target), set(), "random")
    if strategy == "auto":
        log.warning(
            "%s: no unseen-style validation split keeps enough training queries; using a "
            "random query split, so validation (and early stopping) rewards remembering "
            "documents",
            data.name,
        )
    return out
