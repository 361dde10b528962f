"""Funnel search with nested codes: a shortlist from the cheapest code, rescored by longer
prefixes or higher precisions of the same nested vector.

Stage 0 is a faiss index (or any searcher) over the cheapest codes; each later stage reads
the shortlisted documents' codes of another (size, precision) of the same compressor, scores
them exactly against the query's codes of that stage, and keeps its best ``keep``. The last
stage's ranking is the answer. Memory is what stage 0 holds; the rescoring stages read
``keep_{s-1} x bytes_per_vector_s`` bytes per query (from disk or memory).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from smec_jax.core import codes
from smec_jax.serving import codes_folder


@dataclasses.dataclass(frozen=True)
class Rescore:
    """One rescoring stage: documents' and queries' codes (same compressor as the index),
    and how many of the incoming candidates it keeps."""

    doc_codes: str
    query_codes: str
    keep: int


def rescore(q_vec: np.ndarray, doc_vecs: np.ndarray, cand: np.ndarray, keep: int, tie_rank):
    """Top ``keep`` of one query's candidate rows by inner product with ``q_vec``; ties by
    ``tie_rank`` (lower first: trec_eval's doc id order). -1 candidates are skipped."""
    cand = cand[cand >= 0]
    s = doc_vecs[cand] @ q_vec
    order = np.lexsort((tie_rank[cand], -s))[:keep]
    return cand[order], s[order]


def funnel_search(
    index, first_query_codes, first_query_manifest, shortlist, stages, query_ids, doc_ids, tie_rank
):
    """Rankings (rows, scores) of the queries ``query_ids`` (whose first-stage codes are
    ``first_query_codes``, in that order) through the index's shortlist of ``shortlist`` and
    the rescoring stages (each finds its queries' codes by id).

    Returns (rows (Q, k), scores (Q, k), bytes read per query by the rescoring stages)."""
    from smec_jax.serving.faiss_index import search_tie_complete

    # the shortlist cut as the Evaluator cuts: ties at it by trec_eval's order, not faiss's
    _, rows = search_tie_complete(
        index, first_query_codes, first_query_manifest, shortlist, tie_rank
    )
    bytes_read = 0
    prev_keep = shortlist
    scores = None
    for st in stages:
        d_arr, d_ids, d_man = codes_folder.load_codes(st.doc_codes)
        q_arr, q_ids, q_man = codes_folder.load_codes(st.query_codes)
        codes_folder.check_compatible(d_man, q_man, st.doc_codes, st.query_codes)
        if d_ids != doc_ids:
            raise ValueError(f"{st.doc_codes}: its documents are not the index's, row for row")
        d_vecs = codes.decode(np.asarray(d_arr), codes.Calibration.from_json(d_man.calibration))
        q_vecs = codes.decode(np.asarray(q_arr), codes.Calibration.from_json(q_man.calibration))
        q_index = {q: i for i, q in enumerate(q_ids)}
        out_rows = np.full((len(rows), st.keep), -1, np.int64)
        out_scores = np.full((len(rows), st.keep), -np.inf, np.float32)
        for i, (qid, cand) in enumerate(zip(query_ids, rows, strict=True)):
            r, s = rescore(q_vecs[q_index[qid]], d_vecs, np.asarray(cand), st.keep, tie_rank)
            out_rows[i, : len(r)], out_scores[i, : len(s)] = r, s
        bytes_read += prev_keep * d_man.bytes_per_vector
        rows, scores, prev_keep = out_rows, out_scores, st.keep
    return rows, scores, bytes_read
