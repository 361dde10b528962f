"""The Pareto report: its frontier, its per-budget choices (made on validation), its
bootstrap intervals and its per-query scores check against literal computations."""

import json

import numpy as np
import pytest

from smec_jax import methods
from smec_jax.datasets import sources
from smec_jax.datasets.data import DataError
from smec_jax.evaluation import stats
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.studies import pareto
from tests.helpers import tiny_config


def test_frontier_keeps_exactly_the_points_no_cheaper_point_beats():
    rows = [
        {"name": "a", "bytes": 8, "s": 0.5},
        {"name": "b", "bytes": 8, "s": 0.6},
        {"name": "c", "bytes": 16, "s": 0.55},
        {"name": "d", "bytes": 32, "s": 0.7},
        {"name": "e", "bytes": 4, "s": 0.4},
    ]
    assert pareto.frontier(rows, "s") == ["e", "b", "d"]


def test_paired_bootstrap_brackets_the_difference_and_sees_a_real_gain():
    rng = np.random.default_rng(0)
    base = rng.random((1, 200))
    better = base + 0.05 + 0.01 * rng.standard_normal((3, 200))
    same = base + 0.05 * rng.standard_normal((3, 200))
    gain = stats.paired_bootstrap(better, base)
    assert gain["lo"] > 0 and gain["lo"] <= gain["diff"] <= gain["hi"]
    assert abs(gain["diff"] - (better.mean() - base.mean())) < 1e-12
    null = stats.paired_bootstrap(same, base)
    assert null["lo"] < 0 < null["hi"]
    with pytest.raises(ValueError, match="not paired"):
        stats.paired_bootstrap(base, base[:, :10])
    # every replicate as its definition says, one at a time: the same draws give the same
    # interval (up to the order of the float sums)
    a, b, n_boot = better, rng.random((2, 200)), 300
    draws = np.random.default_rng(5)
    q = draws.integers(0, 200, size=(n_boot, 200))
    sa, sb = draws.integers(0, 3, size=(n_boot, 3)), draws.integers(0, 2, size=(n_boot, 2))
    diffs = [a[sa[i]][:, q[i]].mean() - b[sb[i]][:, q[i]].mean() for i in range(n_boot)]
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    got = stats.paired_bootstrap(a, b, n_boot=n_boot, seed=5)
    assert got["lo"] == pytest.approx(lo, abs=1e-12) and got["hi"] == pytest.approx(hi, abs=1e-12)


@pytest.mark.slow
def test_pareto_command_on_the_tiny_config(tmp_path):
    doc = pareto.run(
        tiny_config(), tmp_path, ["truncate", "pca", "smec", "smec_int2"], [0, 1], pq_bytes=(8,),
        opq_iterations=2,  # faiss's OPQ in seconds, not minutes
    )  # fmt: skip
    for f in ("pareto.md", "pareto.json", "pareto.png", "variants.png", "per_query.npz"):
        assert (tmp_path / f).stat().st_size > 100, f
    pts = {p["name"]: p for p in doc["points"]}
    # every size x precision x scoring, plus funnels for the nested compressors
    assert "smec: 8-d binary symm" in pts and "pca: funnel 16-d int2 top 100 -> 32-d float16" in pts
    assert pts["smec: 8-d binary symm"]["bytes"] == 1 and pts["pca: 32-d float32"]["bytes"] == 128
    # faiss's codes of every dense method, priced as faiss stores them
    assert pts["truncate: 32-d faiss PQ8"]["bytes"] == 8 and "pca: 16-d faiss OPQ8 PQ8" in pts
    assert pts["smec: 32-d faiss RaBitQ"]["bytes"] == 12  # 4 B of bits + 8 B of factors
    # per-query scores recompute the reported means
    pq = pareto.load_per_query(tmp_path)
    for name in ("smec: 16-d int8 asym", "truncate: 32-d float16"):
        assert np.isclose(pq[name].mean(axis=1).mean(), pts[name]["test"])
    # each budget's choice is the best validation score among the method's points that fit
    for b, chosen in doc["budgets"].items():
        # the best free code: the best validation score among truncation's and PCA's points
        # (their own codes and faiss's PQ / OPQ / RaBitQ codes of their vectors)
        free = [p for p in doc["points"] if p["method"] in pareto.FREE and p["bytes"] <= int(b)]
        assert pts[chosen["best free code"]["name"]]["val"] == max(p["val"] for p in free)
        for m, c in chosen.items():
            if m == "best free code":
                continue
            fits = [p for p in doc["points"] if p["method"] == m and p["bytes"] <= int(b)]
            assert c["bytes"] <= int(b)
            assert pts[c["name"]]["val"] == max(p["val"] for p in fits)
            if m != "pca":
                assert c["vs_pca"]["lo"] <= c["vs_pca"]["diff"] <= c["vs_pca"]["hi"]
    for key, names in doc["frontier"].items():
        front = [pts[n] for n in names]
        for p in doc["points"]:  # nothing off the frontier beats a frontier point it undercuts
            cheaper = [f for f in front if f["bytes"] <= p["bytes"]]
            if cheaper and p["name"] not in names:
                assert p[key] <= max(f[key] for f in cheaper) + 1e-12
    # quantization-aware vs post-hoc: every int2 code and funnel of smec_int2 against the
    # same code of smec, the difference recomputed from the per-query scores
    qat = doc["quantization_aware"]
    assert {r["config"] for r in qat} == {
        p["config"] for p in doc["points"] if p["method"] == "smec_int2" and "int2" in p["config"]
    }
    assert any(r["config"].startswith("funnel") for r in qat)
    for r in qat:
        want = pq[f"smec_int2: {r['config']}"].mean() - pq[f"smec: {r['config']}"].mean()
        assert np.isclose(r["vs_posthoc"]["diff"], want)
        assert r["vs_posthoc"]["lo"] <= r["vs_posthoc"]["diff"] <= r["vs_posthoc"]["hi"]
    assert (
        "## Quantization-aware training vs post-hoc codes" in (tmp_path / "pareto.md").read_text()
    )
    # rescoring with the original embeddings: offered to every nested compressor but
    # truncation (whose own funnels are exactly that), at the same bytes
    orig = "funnel 16-d int2 top 100 -> original 32-d float16"
    assert f"smec: {orig}" in pts and f"pca: {orig}" in pts and f"truncate: {orig}" not in pts
    own = pts["smec: funnel 16-d int2 top 100 -> 32-d float16"]
    assert pts[f"smec: {orig}"]["bytes"] == own["bytes"] == 4
    assert pts[f"smec: {orig}"]["rescore_bytes_per_query"] == own["rescore_bytes_per_query"]
    # the best SMEC variant per budget, chosen on validation among every variant's points,
    # against each baseline's own choice; recomputed here from the points and the scores
    assert doc["full_size"] == "truncate: 32-d float32"
    for what, allow_funnel in (("funnels allowed", True), ("codes only", False)):
        rows = doc["smec_vs_baselines"][what]
        key = "budgets" if allow_funnel else "budgets_codes_only"
        assert [(r["budget"], r["pick"], r["method"]) for r in rows if r["pick"] == "method"] == [
            (b, "method", m) for b in pareto.GOAL_BUDGETS for m in ("smec", "smec_int2")
        ]
        assert [r["budget"] for r in rows if r["pick"] == "validation"] == list(pareto.GOAL_BUDGETS)
        for r in rows:
            fits = [
                p
                for p in doc["points"]
                if p["method"] in ("smec", "smec_int2")
                and p["bytes"] <= r["budget"]
                and (allow_funnel or not p["config"].startswith("funnel"))
            ]
            if r["pick"] == "validation":  # the best validation score of every variant's points
                assert pts[r["name"]]["val"] == max(p["val"] for p in fits)
            else:  # the variant's own choice
                assert r["name"] == doc[key][str(r["budget"])][r["method"]]["name"]
            assert np.isclose(
                r["share_of_full_test"], r["test"] / pts["truncate: 32-d float32"]["test"]
            )
            assert set(r["vs"]) == {"truncate", "pca", "best free code"}
            for m, v in r["vs"].items():
                base = doc[key][str(r["budget"])][m]["name"]
                assert v["name"] == base
                want = pq[r["name"]].mean() - pq[base].mean()
                assert np.isclose(v["all"]["diff"], want)
                assert v["all"]["lo"] <= v["all"]["diff"] <= v["all"]["hi"]
            worst = min(v["all"]["diff"] for v in r["vs"].values())
            assert r["ahead_of_every_baseline_all"] == (worst > 0)
            assert r["closest_all"] in r["vs"]
    assert "## The best SMEC variant against every baseline" in (tmp_path / "pareto.md").read_text()
    # a report rewritten from its saved files is the same report, and an older report (one
    # without the newer sections) regains them
    old = json.loads((tmp_path / "pareto.json").read_text())
    for k in ("smec_vs_baselines", "full_size", "quantization_aware"):
        old.pop(k)
    (tmp_path / "pareto.json").write_text(json.dumps(old))
    (tmp_path / "pareto.md").write_text("stale")
    again = pareto.rerender(tmp_path)
    assert json.loads(pareto.json_dump(again)) == json.loads(pareto.json_dump(doc))
    assert (tmp_path / "pareto.md").read_text() == pareto.markdown(doc)


def test_a_report_cannot_be_rewritten_without_its_saved_scores(tmp_path):
    with pytest.raises(DataError, match="pareto.json is missing: run launch.pareto"):
        pareto.rerender(tmp_path)


def test_a_funnel_rescored_with_the_original_over_the_whole_corpus_is_the_original_search():
    """The shortlist holds every document, so rescoring it with the original embeddings
    (as float16) must give the original embeddings' float16 search, query by query."""
    cfg = tiny_config()
    ds = sources.load(cfg.data)
    ev = Evaluator.from_config(ds, cfg.eval)
    pca = methods.get("pca").fit(cfg, ds).compressor
    trunc = methods.get("truncate").fit(cfg, ds).compressor
    n = len(ds.corpus_ids)
    got = ev.per_query_funnel(pca, (8, "binary", "symmetric"), n, (32, "float16"), None, trunc)
    want = ev.per_query(trunc, 32, None, "float16")
    np.testing.assert_allclose(got["ndcg@10"], want["ndcg@10"], atol=1e-9)
    # and without it, the compressor's own full-size float16 search
    own = ev.per_query_funnel(pca, (8, "binary", "symmetric"), n, (32, "float16"))
    np.testing.assert_allclose(
        own["ndcg@10"], ev.per_query(pca, 32, None, "float16")["ndcg@10"], atol=1e-9
    )


@pytest.mark.parametrize("spec", ["PQ8", "OPQ8,PQ8"])
def test_faiss_product_codes_score_as_a_brute_force_search_over_their_reconstructions(
    synthetic, spec
):
    """Evaluator.per_query_faiss: float queries against faiss PQ / OPQ codes rank as inner
    products with the codes' reconstructions, ties at rank 100 by doc id descending, scored
    as pytrec_eval scores that ranking."""
    import pytrec_eval

    from smec_jax.core import retrieval
    from smec_jax.evaluation import evaluator as evaluator_lib

    pca = methods.get("pca").fit(tiny_config(), synthetic).compressor
    ev = Evaluator(synthetic, "test")
    got = ev.per_query_faiss(pca, 16, None, spec)["ndcg@10"]
    index = evaluator_lib._faiss_index(pca, 16, spec, synthetic.corpus)
    recon = index.reconstruct_n(0, index.ntotal)
    q = np.asarray(pca.compress_queries(synthetic.queries[synthetic.query_rows(ev.qids)], 16))
    s = q @ recon.T
    tie = np.empty(len(synthetic.corpus_ids), np.int64)
    tie[retrieval.trec_tie_order(synthetic.corpus_ids)] = np.arange(len(tie))
    run = {}
    for i, qid in enumerate(ev.qids):
        top = np.lexsort((tie, -s[i]))[:100]
        run[qid] = {synthetic.corpus_ids[j]: float(100 - r) for r, j in enumerate(top)}
    rels = {q: synthetic.qrels["test"][q] for q in ev.qids}
    want = pytrec_eval.RelevanceEvaluator(rels, {"ndcg_cut.10"}).evaluate(run)
    np.testing.assert_allclose(got, [want[q]["ndcg_cut_10"] for q in ev.qids], atol=1e-6)
