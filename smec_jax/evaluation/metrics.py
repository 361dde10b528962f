"""nDCG@k, Recall@k and MRR@k with trec_eval semantics, vectorised over queries.

trec_eval definitions (as pytrec_eval / ir_measures compute them):
  * ``ndcg_cut_k``: gain = the qrel grade (linear), discount 1/log2(rank + 1); the ideal DCG
    is built from *all* judged docs of the query with grade > 0, sorted by grade.
  * ``recall_k``: relevant (grade >= 1) docs in the top k / all relevant docs of the query.
  * ``RR@k``: 1 / rank of the first relevant doc within the top k, else 0.
Only queries with at least one relevant judgment are scored; the mean is over them.
Unjudged retrieved docs have gain 0, negative grades count as 0.
"""

from __future__ import annotations

import numpy as np

from smec_jax.datasets.data import Qrels


def retrieved_grades(
    ranked: np.ndarray, qids: list[str], doc_ids: list[str], qrels: Qrels
) -> np.ndarray:
    """Looks up the grade of every retrieved doc, vectorised.

    Args:
      ranked: (n_queries, k) int corpus row indices, best first; -1 marks an empty slot.
      qids: the query id of each row of ``ranked``.
      doc_ids: corpus ids in row order.
      qrels: query id -> doc id -> grade.

    Returns:
      (n_queries, k) int32 grades (0 for unjudged docs and empty slots).
    """
    n_docs = len(doc_ids)
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    keys, grades = [], []
    for qi, q in enumerate(qids):
        for d, g in qrels.get(q, {}).items():
            if d in doc_row:
                keys.append(qi * n_docs + doc_row[d])
                grades.append(g)
    if not keys:
        return np.zeros(ranked.shape, dtype=np.int32)
    keys_a = np.asarray(keys, dtype=np.int64)
    order = np.argsort(keys_a)
    keys_a, grades_a = keys_a[order], np.asarray(grades, dtype=np.int32)[order]
    flat = np.arange(len(qids), dtype=np.int64)[:, None] * n_docs + ranked.astype(np.int64)
    pos = np.minimum(np.searchsorted(keys_a, flat), len(keys_a) - 1)
    hit = (ranked >= 0) & (keys_a[pos] == flat)
    return np.where(hit, grades_a[pos], 0).astype(np.int32)


def ideal_grades(qids: list[str], qrels: Qrels, k: int) -> np.ndarray:
    """(n_queries, k) grades of the ideal ranking (all judged docs with grade > 0, sorted)."""
    out = np.zeros((len(qids), k), dtype=np.int32)
    for i, q in enumerate(qids):
        g = sorted((g for g in qrels.get(q, {}).values() if g > 0), reverse=True)[:k]
        out[i, : len(g)] = g
    return out


def _discount(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_at_k(grades: np.ndarray, ideal: np.ndarray, k: int) -> np.ndarray:
    """Per-query nDCG@k from retrieved and ideal grade matrices."""
    g = np.maximum(grades[:, :k], 0).astype(np.float64)
    dcg = (g * _discount(g.shape[1])).sum(axis=1)
    i = ideal[:, :k].astype(np.float64)
    idcg = (i * _discount(i.shape[1])).sum(axis=1)
    return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)


def recall_at_k(grades: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    found = (grades[:, :k] >= 1).sum(axis=1)
    return np.where(n_relevant > 0, found / np.maximum(n_relevant, 1), 0.0)


def mrr_at_k(grades: np.ndarray, k: int) -> np.ndarray:
    rel = grades[:, :k] >= 1
    first = np.argmax(rel, axis=1)
    return np.where(rel.any(axis=1), 1.0 / (first + 1), 0.0)


def score_run(
    ranked: np.ndarray, qids: list[str], doc_ids: list[str], qrels: Qrels
) -> dict[str, np.ndarray]:
    """Per-query ``ndcg@10``, ``recall@100`` and ``mrr@10`` for a ranked run.

    ``ranked`` needs at least 100 columns for recall@100 to be exact (fewer docs in the
    corpus is fine). Queries without a relevant judgment must be filtered out beforehand.
    """
    grades = retrieved_grades(ranked, qids, doc_ids, qrels)
    ideal = ideal_grades(qids, qrels, 10)
    n_rel = np.asarray([sum(g >= 1 for g in qrels.get(q, {}).values()) for q in qids])
    return {
        "ndcg@10": ndcg_at_k(grades, ideal, 10),
        "recall@100": recall_at_k(grades, n_rel, 100),
        "mrr@10": mrr_at_k(grades, 10),
    }
