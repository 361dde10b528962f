"""Training batches: hard negatives mined once, and grain batch pipelines.

A supervised batch (DESIGN.md 2.7) holds B training queries; each brings up to P of its
judged-relevant docs and H hard negatives (top-ranked, unjudged docs under the *frozen*
embeddings, sampled from a pool mined once). Every query is scored against every doc of the
batch (so the other queries' docs are in-batch negatives), with the graded relevance of
each (query, doc) pair looked up in the qrels. A doc that appears twice in a batch counts
once.

Batches are a grain ``MapDataset`` indexed by the global step: batch ``s`` is the same on
every run, which is what makes a resumed run bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable

import grain
import numpy as np

from smec_jax.core import retrieval
from smec_jax.datasets.data import Qrels, RetrievalData
from smec_jax.datasets.pseudo_queries import DOCUMENTS
from smec_jax.training.splits import split_train_val

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainQueries:
    """Training queries resolved to rows.

    Attributes:
      rows: (n,) rows into ``data.queries``.
      judged: per query, (doc rows (m,), grades (m,)) of every judgment (any grade).
      hard_pool: (n, pool) doc rows of mined hard negatives (-1 padded).
    """

    rows: np.ndarray
    judged: list[tuple[np.ndarray, np.ndarray]]
    hard_pool: np.ndarray


def resolve(
    data: RetrievalData,
    split: str,
    qids: list[str],
    pool: int,
    mesh=None,
    *,
    qrels: Qrels | None = None,
    held_out: frozenset[str] = frozenset(),
) -> TrainQueries:
    """Rows, judgments and a mined hard-negative pool for each query id.

    ``qrels`` (default: the split's) are the judgments training may use; ``held_out``
    documents are never a hard negative (they belong to validation).
    """
    doc_row = {d: i for i, d in enumerate(data.corpus_ids)}
    qrels = data.qrels_for(split) if qrels is None else qrels
    rows = data.query_rows(qids)
    judged = []
    for q in qids:
        docs = [(doc_row[d], g) for d, g in qrels[q].items()]
        judged.append(
            (np.asarray([r for r, _ in docs], np.int32), np.asarray([g for _, g in docs], np.int32))
        )
    max_judged = max(len(j[0]) for j in judged)
    held_rows = np.asarray(sorted(doc_row[d] for d in held_out if d in doc_row), np.int64)
    depth = min(pool + max_judged + len(held_rows), len(data.corpus_ids))
    _, top = retrieval.search(data.queries[rows], data.corpus, depth, mesh=mesh)
    hard = np.full((len(qids), pool), -1, np.int32)
    for i, (doc_rows, _) in enumerate(judged):
        usable = ~np.isin(top[i], doc_rows) & (top[i] >= 0)
        if len(held_rows):
            usable &= ~np.isin(top[i], held_rows)
        cand = top[i][usable][:pool]
        hard[i, : len(cand)] = cand
    return TrainQueries(rows=rows, judged=judged, hard_pool=hard)


def _example(index: int, rng: np.random.Generator, tq: TrainQueries, n_pos: int, n_hard: int):
    """One query's slots: up to n_pos judged-relevant docs, then n_hard hard negatives."""
    doc_rows, grades = tq.judged[index]
    pos = doc_rows[grades > 0]
    if len(pos) > n_pos:
        pos = rng.choice(pos, size=n_pos, replace=False)
    pool = tq.hard_pool[index][tq.hard_pool[index] >= 0]
    hard = rng.choice(pool, size=min(n_hard, len(pool)), replace=False)
    slots = np.full((n_pos + n_hard,), -1, np.int32)
    slots[: len(pos)] = pos
    slots[n_pos : n_pos + len(hard)] = hard
    return {"query": np.int32(index), "slots": slots}


def _collate(examples: list[dict], tq: TrainQueries, data: RetrievalData, n_pos: int) -> dict:
    """Batch of examples -> arrays for the train step (see module docstring)."""
    qi = np.asarray([e["query"] for e in examples])
    docs = np.concatenate([e["slots"] for e in examples])  # (C,)
    _, first = np.unique(docs, return_index=True)
    keep = np.zeros(docs.shape, bool)
    keep[first] = True
    keep &= docs >= 0
    col = {int(d): c for c, d in enumerate(docs) if keep[c]}
    b, c = len(qi), len(docs)
    grades = np.zeros((b, c), np.int32)
    valid = np.broadcast_to(keep, (b, c)).copy()
    pos_idx = np.zeros((b, n_pos), np.int32)
    pos_ok = np.zeros((b, n_pos), bool)
    for i, q in enumerate(qi):
        doc_rows, g = tq.judged[q]
        cols = [(col[int(d)], int(gr)) for d, gr in zip(doc_rows, g, strict=True) if int(d) in col]
        for cc, gr in cols:
            grades[i, cc] = gr
        positive = [cc for cc, gr in cols if gr > 0]
        for cc in positive[n_pos:]:  # more positives than slots: leave the extras out
            valid[i, cc] = False
        positive = positive[:n_pos]
        pos_idx[i, : len(positive)] = positive
        pos_ok[i, : len(positive)] = True
    n_docs = len(data.corpus_ids)
    safe = np.maximum(docs, 0)
    return {
        "q": data.queries[tq.rows[qi]],
        "q_ids": (n_docs + tq.rows[qi]).astype(np.int32),
        "d": np.where(keep[:, None], data.corpus[safe], 0.0).astype(np.float32),
        "d_ids": np.where(keep, docs, -1).astype(np.int32),
        "d_keep": keep,
        "grades": grades,
        "valid": valid,
        "pos_idx": pos_idx,
        "pos_ok": pos_ok,
    }


def supervised_batches(
    data: RetrievalData, tq: TrainQueries, *, batch_queries: int, n_pos: int, n_hard: int, seed: int
) -> grain.MapDataset:
    """Random-access dataset: ``ds[step]`` is the batch of global step ``step``."""
    if len(tq.rows) < batch_queries:
        raise ValueError(
            f"batch of {batch_queries} queries but only {len(tq.rows)} training queries; "
            "lower --config.train.batch_queries"
        )
    return (
        grain.MapDataset.range(len(tq.rows))
        .shuffle(seed=seed)
        .repeat()
        .random_map(lambda i, rng: _example(int(i), rng, tq, n_pos, n_hard), seed=seed + 1)
        .batch(
            batch_queries, drop_remainder=True, batch_fn=lambda ex: _collate(ex, tq, data, n_pos)
        )
    )


def supervised_input(cfg, data: RetrievalData):
    """(training query ids, validation query ids, batches indexed by global step) of
    supervised training: validation carved from ``cfg.train.split``, hard negatives mined."""
    split = cfg.train.split
    vs = split_train_val(data, split, cfg.train.val_fraction, cfg.seed, cfg.train.val_split)
    log.info("%s", vs.describe())
    train_q, val_q = vs.train, vs.val
    tq = resolve(
        data, split, train_q, cfg.train.hard_pool, qrels=vs.train_qrels, held_out=vs.held_out
    )
    batches = supervised_batches(
        data,
        tq,
        batch_queries=cfg.train.batch_queries,
        n_pos=cfg.train.n_pos,
        n_hard=cfg.train.n_hard,
        seed=cfg.seed,
    )
    return train_q, val_q, batches


def unsupervised_batches(data: RetrievalData, *, batch_size: int, seed: int) -> grain.MapDataset:
    """Label-free batches of corpus documents (method ``smec_unsup``)."""
    if len(data.corpus_ids) < batch_size:
        raise ValueError(f"batch of {batch_size} docs but the corpus has {len(data.corpus_ids)}")
    return (
        grain.MapDataset.range(len(data.corpus_ids))
        .shuffle(seed=seed)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .map(
            lambda rows: {
                "x": data.corpus[rows],
                "ids": rows.astype(np.int32),
                "keep": np.ones(rows.shape, bool),
            }
        )
    )


UNLABELLED = ("train", "pseudo", "train+pseudo")


def unjudged_queries(data: RetrievalData) -> list[str]:
    """Query ids, in row order, that no split judges: a query log."""
    judged = {q for split in data.qrels.values() for q in split}
    return [q for q in data.query_ids if q not in judged]


def unlabelled_queries(
    data: RetrievalData,
    qids: list[str] | None = None,
    split: str = "train",
    source="train",
    log_share: float = 0.0,
) -> tuple[np.ndarray, str]:
    """(query embeddings, where they came from) for distillation and the score-preserving
    maps; no judgment is read. ``source`` (:data:`UNLABELLED`):

    * "train": the embeddings of ``qids`` (training queries), else the queries of ``split``,
      else (no ``split`` judgments) the queries that no split judges (a query log: never
      the test queries), else the corpus documents as pseudo-queries;
    * "pseudo": the pseudo-queries made from the corpus (``data.pseudo_queries``, attached
      by :func:`smec_jax.datasets.pseudo_queries.attach`);
    * "train+pseudo": both; with ``log_share`` > 0 the training queries are repeated
      (whole copies, at least one) until they make up about that share of the result.
    """
    if source not in UNLABELLED:
        raise ValueError(f"unknown unlabelled query source {source!r}; use one of {UNLABELLED}")
    parts = []
    if "pseudo" in source:
        if data.pseudo_queries is None:
            raise ValueError(
                f"{data.name}: no pseudo-queries attached (smec_jax.datasets.pseudo_queries.attach)"
            )
        parts.append((data.pseudo_queries, data.pseudo_source))
    if source.startswith("train"):
        if qids is None and split in data.qrels:
            qids = [q for q in data.query_ids if q in data.qrels[split]]
        what = "training queries"
        if qids is None and split not in data.qrels:  # the queries no split judges: a log
            qids, what = unjudged_queries(data), "logged queries (judged in no split)"
        if qids:
            log = data.queries[data.query_rows(list(qids))]
            copies = 1
            if log_share and parts:  # parts holds the pseudo-queries
                others = len(parts[0][0])
                copies = max(1, round(log_share * others / ((1 - log_share) * len(log))))
            times = f" x{copies}" if copies > 1 else ""
            parts.append((np.tile(log, (copies, 1)), f"{len(qids)} {what}{times}"))
        elif source == "train":
            parts.append((data.corpus, f"{len(data.corpus_ids)} corpus docs as pseudo-queries"))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), " + ".join(p[1] for p in parts)


def distill_batches(
    data: RetrievalData,
    queries: np.ndarray,
    *,
    batch: int,
    top: int,
    n_random: int,
    seed: int,
    source_rows: np.ndarray | None = None,
    self_rows: np.ndarray | None = None,
) -> grain.MapDataset:
    """Random-access distillation batches: ``ds[step]`` holds ``u_q`` (batch, D) unlabelled
    queries, ``u_d`` (batch * top + n_random, D) candidates (each query's full-size top
    ``top`` docs, mined once, then random docs) and ``u_valid``: False on a repeated doc.

    With ``source_rows`` (per query, the corpus row it was made from, -1 for none), each
    query's source document is appended to the candidates (its top-1 stands in where it has
    none, a repeat), and ``u_src`` (batch,) int32 is the candidate index of the source's
    first occurrence, -1 for none.

    With ``self_rows`` (per query, the corpus row that *is* the query, -1 for none: the
    pseudo-query rule ``documents``), ``u_self`` (batch,) int32 is the candidate index of
    that document where it is among the candidates, else -1; the loss leaves it out."""
    if len(queries) < batch:
        raise ValueError(
            f"distillation batch of {batch} queries but only {len(queries)} unlabelled "
            "queries; lower --config.train.distill_batch"
        )
    _, top_rows = retrieval.search(queries, data.corpus, top)
    n_docs = len(data.corpus_ids)

    def collate(rows: np.ndarray, rng: np.random.Generator) -> dict:
        docs = np.concatenate([top_rows[rows].reshape(-1), rng.integers(0, n_docs, n_random)])
        if source_rows is not None:
            src = source_rows[rows]
            docs = np.concatenate([docs, np.where(src >= 0, src, top_rows[rows, 0])])
        uniq, first, inverse = np.unique(docs, return_index=True, return_inverse=True)
        valid = np.zeros(docs.shape, bool)
        valid[first] = True
        out = {"u_q": queries[rows], "u_d": data.corpus[docs], "u_valid": valid}
        if source_rows is not None:
            at = first[inverse[len(docs) - len(rows) :]]
            out["u_src"] = np.where(src >= 0, at, -1).astype(np.int32)
        if self_rows is not None:
            own = self_rows[rows]
            pos = np.minimum(np.searchsorted(uniq, own), len(uniq) - 1)
            present = (own >= 0) & (uniq[pos] == own)
            out["u_self"] = np.where(present, first[pos], -1).astype(np.int32)
        return out

    return (
        grain.MapDataset.range(len(queries))
        .shuffle(seed=seed + 7)
        .repeat()
        .batch(batch, drop_remainder=True)
        .random_map(lambda rows, rng: collate(np.asarray(rows), rng), seed=seed + 8)
    )


def distill_input(cfg, data: RetrievalData, train_q: list[str] | None):
    """Distillation batches of ``train.distill_*`` over ``train.unlabelled_queries``: the
    training queries ``train_q`` (never the validation ones), else the queries of
    ``train.split``, else the corpus; and/or the corpus's pseudo-queries."""
    queries, source = unlabelled_queries(
        data, train_q, cfg.train.split, cfg.train.unlabelled_queries, cfg.train.log_share
    )
    log.info("distillation queries: %s", source)
    source_rows = None
    if cfg.train.distill_source_weight:  # pseudo-queries come first (unlabelled_queries)
        if data.pseudo_doc_rows is None:
            raise ValueError(
                f"{data.name}: --config.train.distill_source_weight needs the document each "
                "pseudo-query was made from, and these pseudo-queries do not say"
            )
        source_rows = _doc_rows_of(data, len(queries))
    return distill_batches(
        data,
        queries,
        batch=cfg.train.distill_batch,
        top=cfg.train.distill_top,
        n_random=cfg.train.distill_random,
        seed=cfg.seed,
        source_rows=source_rows,
        self_rows=own_rows(cfg, data, len(queries)),
    )


def own_rows(cfg, data: RetrievalData, n_queries: int) -> np.ndarray | None:
    """Under the pseudo-query rule ``documents``: per unlabelled query (of
    :func:`unlabelled_queries`, pseudo-queries first), the corpus row that is the query,
    -1 for a log query; else None."""
    if "pseudo" not in cfg.train.unlabelled_queries or cfg.data.pseudo_rule != DOCUMENTS:
        return None
    return _doc_rows_of(data, n_queries)


def _doc_rows_of(data: RetrievalData, n_queries: int) -> np.ndarray:
    """Per unlabelled query (pseudo-queries first, as :func:`unlabelled_queries` orders
    them), the corpus row its pseudo-query was made from; -1 for the log queries after."""
    rows = np.full(n_queries, -1, np.int64)
    rows[: len(data.pseudo_doc_rows)] = data.pseudo_doc_rows
    return rows


class Merged:
    """Batch ``step`` of several random-access datasets, as one dict (disjoint keys)."""

    def __init__(self, *datasets):
        self.datasets = datasets

    def __getitem__(self, step: int) -> dict:
        out: dict = {}
        for ds in self.datasets:
            out.update(ds[step])
        return out


class Prefetcher:
    """Builds and places the batches of steps start, start+1, ... on a background thread,
    ``size`` ahead of the train loop, so host work overlaps the device's step."""

    def __init__(self, batches, start: int, place: Callable[[dict], dict], size: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()

        def work():
            step = start
            while not self._stop.is_set():
                try:
                    item = place(batches[step])
                except Exception as e:  # noqa: BLE001 - re-raised in the consumer
                    item = e
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if isinstance(item, Exception):
                    return
                step += 1

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def next(self) -> dict:
        item = self._q.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
