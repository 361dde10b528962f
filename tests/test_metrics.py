"""Metrics equal trec_eval (pytrec_eval) and a per-query brute-force loop."""

import math

import numpy as np
import pytest

from smec_jax.core import retrieval
from smec_jax.evaluation import metrics


def brute_force(ranked_ids, qrels, k_ndcg=10, k_rec=100):
    """Textbook trec_eval definitions, one query at a time."""
    out = {"ndcg@10": [], "recall@100": [], "mrr@10": []}
    for q, docs in ranked_ids.items():
        rels = qrels[q]
        dcg = sum(max(rels.get(d, 0), 0) / math.log2(r + 2) for r, d in enumerate(docs[:k_ndcg]))
        ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k_ndcg]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        out["ndcg@10"].append(dcg / idcg)
        n_rel = sum(g >= 1 for g in rels.values())
        out["recall@100"].append(sum(rels.get(d, 0) >= 1 for d in docs[:k_rec]) / n_rel)
        rr = [1 / (r + 1) for r, d in enumerate(docs[:k_ndcg]) if rels.get(d, 0) >= 1]
        out["mrr@10"].append(rr[0] if rr else 0.0)
    return out


def test_graded_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    doc_ids = [f"d{i}" for i in range(300)]
    qids = [f"q{i}" for i in range(25)]
    qrels = {}
    for q in qids:  # graded, with some judged-irrelevant (0) and negative grades
        picks = rng.choice(300, size=rng.integers(1, 15), replace=False)
        qrels[q] = {doc_ids[j]: int(rng.integers(-1, 4)) for j in picks}
        qrels[q][doc_ids[picks[0]]] = 2  # at least one relevant
    ranked = np.stack([rng.permutation(300)[:120] for _ in qids])
    ranked[3, 50:] = -1  # short run: empty slots must count as nothing
    got = metrics.score_run(ranked, qids, doc_ids, qrels)
    want = brute_force(
        {q: [doc_ids[j] for j in row if j >= 0] for q, row in zip(qids, ranked, strict=True)}, qrels
    )
    for m in want:
        np.testing.assert_allclose(got[m], want[m], atol=1e-12, err_msg=m)


def test_matches_pytrec_eval_on_real_scifact(scifact_minilm):
    """On real SciFact runs (full size and 64-d truncation), every query agrees to 1e-6."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    d = scifact_minilm
    qids = d.judged_queries("test")
    qrels = d.qrels_for("test")
    q = d.queries[d.query_rows(qids)]
    for dim in (384, 64):
        scores, ranked = retrieval.search(q[:, :dim], d.corpus[:, :dim], 100)
        ours = metrics.score_run(ranked, qids, d.corpus_ids, qrels)
        run = {
            qid: {d.corpus_ids[j]: float(s) for j, s in zip(ranked[i], scores[i], strict=True)}
            for i, qid in enumerate(qids)
        }
        ev = pytrec_eval.RelevanceEvaluator(
            {q_: qrels[q_] for q_ in qids}, {"ndcg_cut.10", "recall.100", "recip_rank"}
        )
        ref = ev.evaluate(run)
        np.testing.assert_allclose(
            ours["ndcg@10"], [ref[x]["ndcg_cut_10"] for x in qids], atol=1e-6
        )
        np.testing.assert_allclose(
            ours["recall@100"], [ref[x]["recall_100"] for x in qids], atol=1e-6
        )
        # trec_eval's recip_rank has no cut: compare where the first hit is in the top 10.
        rr = np.asarray([ref[x]["recip_rank"] for x in qids])
        np.testing.assert_allclose(ours["mrr@10"], np.where(rr >= 0.1, rr, 0.0), atol=1e-6)
        if dim == 384:
            assert abs(ours["ndcg@10"].mean() - 0.6451) < 5e-5  # MTEB's published value


def _tied_dataset(seed: int):
    """A corpus of exact duplicates (few distinct vectors, so every score ties with many
    others, across ranks 10 and 100) under ids whose string order differs from row order."""
    from smec_jax.datasets.data import RetrievalData

    rng = np.random.default_rng(seed)
    n_docs, n_q, dim = 260, 30, 6
    base = rng.normal(size=(9, dim)).astype(np.float32)
    corpus = base[rng.integers(0, 9, size=n_docs)]
    ids = [f"{'ab'[i % 2]}{x}" for i, x in enumerate(rng.choice(10**4, n_docs, replace=False))]
    queries = rng.normal(size=(n_q, dim)).astype(np.float32)
    qids = [f"q{i}" for i in range(n_q)]
    qrels = {}
    for q in qids:
        picks = rng.choice(n_docs, size=int(rng.integers(1, 40)), replace=False)
        qrels[q] = {ids[j]: int(rng.integers(0, 4)) for j in picks}
        qrels[q][ids[picks[0]]] = int(rng.integers(1, 4))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    return RetrievalData("tied", "toy", ids, unit(corpus), qids, unit(queries), {"test": qrels})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_runs_with_exact_ties_match_pytrec_eval(seed):
    """Property test: on runs where many documents tie (ties straddling ranks 10 and 100),
    the Evaluator's per-query nDCG@10, Recall@100 and MRR@10 equal pytrec_eval's on the full
    run to 1e-6 (trec_eval sorts ties by document id, descending; so does our top-k), while
    breaking ties by row would not."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from smec_jax.evaluation.evaluator import Evaluator
    from smec_jax.methods.closed_form import Truncate

    d = _tied_dataset(seed)
    comp, evaluator = Truncate(), Evaluator(d)
    ours = evaluator.per_query(comp, d.dim)  # top-100, as every score we report
    # the same search (same vectors, layout and scores) for every doc: the full run
    q, c = comp.compress(d.queries, d.dim), comp.compress(d.corpus, d.dim)
    scores, rows = retrieval.search(q, c, len(d.corpus_ids), tie_order=evaluator.tie_order)
    assert sum(s[9] == s[10] for s in scores) >= 5 and sum(s[99] == s[100] for s in scores) >= 5
    run = {
        q: {d.corpus_ids[j]: float(s) for j, s in zip(rows[i], scores[i], strict=True)}
        for i, q in enumerate(d.query_ids)
    }
    qrels = d.qrels["test"]
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "recip_rank"})
    ref = ev.evaluate(run)
    qids = d.judged_queries("test")
    np.testing.assert_allclose(ours["ndcg@10"], [ref[q]["ndcg_cut_10"] for q in qids], atol=1e-6)
    np.testing.assert_allclose(ours["recall@100"], [ref[q]["recall_100"] for q in qids], atol=1e-6)
    rr = np.asarray([ref[q]["recip_rank"] for q in qids])
    np.testing.assert_allclose(ours["mrr@10"], np.where(rr >= 0.1, rr, 0.0), atol=1e-6)
    by_row = Evaluator(d, ties="row").per_query(Truncate(), d.dim)
    assert not np.allclose(by_row["ndcg@10"], ours["ndcg@10"])


def test_real_nfcorpus_with_duplicate_documents_matches_pytrec_eval_and_mteb():
    """NFCorpus holds exact duplicate documents under different ids, whose scores tie: with
    trec_eval's tie order every query equals pytrec_eval on our run, and the mean is MTEB's
    published 0.3159 (breaking ties by row gives 0.3167 and differs on 6 queries)."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from smec_jax.datasets import data
    from smec_jax.evaluation.evaluator import TOP_K, Evaluator
    from smec_jax.methods.closed_form import Truncate
    from tests.conftest import SCIFACT

    root = SCIFACT.parent / "nfcorpus"
    if not (root / "embeddings" / "all-MiniLM-L6-v2").is_dir():
        pytest.skip("NFCorpus embeddings not found")
    d = data.load_embedded(root, "all-MiniLM-L6-v2")
    ev = Evaluator(d)
    ours = ev.per_query(Truncate(), d.dim)
    q = d.queries[d.query_rows(ev.qids)]
    scores, rows = retrieval.search(q, d.corpus, TOP_K, tie_order=ev.tie_order)
    assert sum(int(np.sum(s[1:] == s[:-1])) for s in scores) > 0  # there are ties
    run = {
        qid: {d.corpus_ids[j]: float(s) for j, s in zip(rows[i], scores[i], strict=True)}
        for i, qid in enumerate(ev.qids)
    }
    ref = pytrec_eval.RelevanceEvaluator(
        {x: ev.qrels[x] for x in ev.qids}, {"ndcg_cut.10"}
    ).evaluate(run)
    np.testing.assert_allclose(ours["ndcg@10"], [ref[x]["ndcg_cut_10"] for x in ev.qids], atol=1e-6)
    assert abs(ours["ndcg@10"].mean() - 0.3159) < 5e-5
    by_row = Evaluator(d, ties="row").per_query(Truncate(), d.dim)["ndcg@10"]
    assert abs(by_row.mean() - 0.3167) < 5e-5
