"""The report's analyses: WARE importance and achievement rate against brute force, the
gradient probe's statistics against a literal computation, and each analysis end to end on
the tiny synthetic config."""

import re

import numpy as np
import pytest

from smec_jax.evaluation import stats
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.methods.closed_form import Truncate
from smec_jax.studies import analyses
from smec_jax.studies.analyses import ads_ware, gradient_probe
from tests.helpers import tiny_config


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_ware_importance_equals_removing_each_dim_by_hand():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 12)), rng.normal(size=(7, 12))
    want = np.zeros(12)
    for j in range(12):
        keep = np.arange(12) != j
        for p in range(7):
            full = _cos(a[p], b[p])
            want[j] += abs(_cos(a[p, keep], b[p, keep]) - full) / abs(full) / 7
    np.testing.assert_allclose(ads_ware.ware_importance(a, b), want, rtol=1e-10)


def test_a_dim_that_carries_the_similarity_is_the_most_important():
    rng = np.random.default_rng(1)
    a, b = 0.01 * rng.normal(size=(50, 8)), 0.01 * rng.normal(size=(50, 8))
    a[:, 5], b[:, 5] = 1.0, 1.0  # dim 5 holds almost all of every dot product
    imp = ads_ware.ware_importance(a, b)
    assert int(np.argmax(imp)) == 5


def test_achievement_rate_counts_the_overlap_with_the_ware_top_d():
    imp = np.array([0.1, 0.9, 0.3, 0.8, 0.0, 0.5])  # top-2 = {1, 3}; top-3 = {1, 3, 5}
    assert ads_ware.achievement_rate(np.array([1, 3]), imp) == 1.0
    assert ads_ware.achievement_rate(np.array([0, 1]), imp) == 0.5
    assert ads_ware.achievement_rate(np.array([0, 2, 4]), imp) == 0.0
    assert ads_ware.achievement_rate(np.array([2, 3, 5]), imp) == 2 / 3


def test_grad_stats_equal_a_literal_computation():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(4, 6, 10))  # (probe batches, D, N)
    small = np.array([0, 1, 2])
    s = gradient_probe.grad_stats(g, small)
    mean = g.mean(0)
    mags = [np.sqrt(sum(mean[i, j] ** 2 for i in range(6))) for j in range(10)]
    assert np.isclose(s["mag_small"], np.mean(mags[:3]))
    assert np.isclose(s["mag_other"], np.mean(mags[3:]))
    var = [[np.var([g[b, i, j] for b in range(4)]) for j in range(10)] for i in range(6)]
    assert np.isclose(s["var_all"], np.mean(var))
    assert np.isclose(s["var_small"], np.mean(np.asarray(var)[:, :3]))


def test_gradient_probe_runs_both_schedules(synthetic):
    """Same steps and records for both schedules, SMRL's records spanning its two stages,
    and finite, non-negative statistics with a non-zero gradient on the small columns."""
    cfg = tiny_config()
    mrl = gradient_probe.gradient_probe(cfg, synthetic, "mrl", n_probe=2)
    smrl = gradient_probe.gradient_probe(cfg, synthetic, "mrl_smrl", n_probe=2)
    assert mrl["step"] == smrl["step"] and len(mrl["step"]) >= 2
    assert set(smrl["stage"]) == {1, 2} and set(mrl["stage"]) == {1}
    for p in (mrl, smrl):
        for key in ("mag_small", "mag_other", "var_all", "var_small"):
            assert np.all(np.isfinite(p[key]))
        assert np.all(np.asarray(p["mag_small"]) > 0)
    # The paper's mechanism, at the first record (same state, same probe batches): MRL sums a
    # loss term per size, and every one of them reaches the smallest size's columns, so they
    # get a larger share of the gradient than under SMRL's first stage (two sizes).
    ratio = {n: p["mag_small"][0] / p["mag_other"][0] for n, p in (("mrl", mrl), ("smrl", smrl))}
    assert ratio["mrl"] > ratio["smrl"], ratio


def test_ads_selection_and_table_on_the_tiny_config(synthetic):
    cfg = tiny_config()
    sets = ads_ware.ads_selection(cfg, synthetic)
    assert [len(s) for s in sets] == [32, 16, 8]
    assert set(map(int, sets[2])) <= set(map(int, sets[1]))
    qids = synthetic.judged_queries("train")[:20]
    table = ads_ware.ads_table(synthetic, {"ads": sets}, (32, 16, 8), qids)
    assert set(table["achievement_rate"]) == {"16", "8"}
    imp = np.asarray(table["importance"])

    def brute_rate(selected, d):
        """Share of ``selected`` among the d most important dims, by counting for each dim how
        many others rank above it (higher importance, or equal and earlier)."""
        n = len(imp)
        above = [
            sum(imp[j] > imp[i] or (imp[j] == imp[i] and j < i) for j in range(n)) for i in range(n)
        ]
        top = {i for i in range(n) if above[i] < d}
        return len(set(map(int, selected)) & top) / d

    for d, s in ((16, sets[1]), (8, sets[2])):
        row = table["achievement_rate"][str(d)]
        assert row["ads"] == brute_rate(s, d)
        assert row["prefix"] == brute_rate(range(d), d)
    assert table["pairs"] == 20 * 20


@pytest.mark.slow
def test_analyze_command_writes_every_section(tmp_path, synthetic, capsys):
    """launch.analyze end to end on the tiny config: all four analyses, their plots, and a
    report whose tables hold the measured values; the cross-corpus target is a second
    synthetic dataset standing in for another corpus, fitted and scored over two seeds."""
    from smec_jax.datasets.synthetic import make_synthetic

    targets = {
        "other": make_synthetic(n_docs=500, n_train=60, n_test=30, dim=32, rank=8, seed=5),
        "another": make_synthetic(n_docs=400, n_train=0, n_test=20, dim=32, rank=8, seed=6),
    }
    cfg = tiny_config()
    doc = analyses.run(
        cfg,
        str(tmp_path),
        ["grad", "ads", "memory", "cross"],
        memory_sizes=(64, 128),
        targets=tuple(targets),
        transfer_methods=("smec", "mrl"),
        target_methods=("score_svd", "smec_unsup"),  # closed form and seeded: both paths
        load_target=lambda _cfg, name, *a: targets[name],
        seeds=(0, 1),
    )
    for png in ("grad_variance.png", "ads_ware.png", "memory_sweep.png"):
        assert (tmp_path / png).stat().st_size > 1000
    # every cross-corpus fit is announced once, numbered, with an ETA: 2 transfer methods x 2
    # seeds, then per target score_svd (closed form: once) and smec_unsup x 2 seeds
    counted = re.findall(r"\[fit (\d+)/(\d+)\] .* \| ETA ", capsys.readouterr().out)
    assert counted == [(str(i), "10") for i in range(1, 11)]
    assert set(doc["memory"]) == {"64", "128"} and doc["memory"]["64"]["step_ms"] > 0
    rows = doc["cross"]["other"]
    names = {
        "full size (no compression)",
        "truncate",
        "pca (fitted on target)",
        "smec (SciFact-trained)",
        "mrl (SciFact-trained)",
        "score_svd (target, no labels)",
        "smec_unsup (target, no labels)",
    }
    assert set(rows) == names | {"vs_pca"}
    # every interval is the bootstrap of the saved per-query scores; pooled = both targets
    saved = {}
    for name in targets:
        with np.load(tmp_path / "cross_per_query" / f"{name}.npz") as f:
            saved[name] = {n: f[f"p{i}"] for i, n in enumerate(f["names"])}
            assert list(f["sizes"]) == list(cfg.ladder)
    base, smec = "pca (fitted on target)", "smec (SciFact-trained)"
    assert saved["other"][smec].shape[:2] == (2, len(cfg.ladder))  # seeds, sizes, queries
    assert saved["other"][base].shape[0] == 1  # closed-form: fitted once
    for i, d in enumerate(cfg.ladder):
        mean = float(saved["other"][smec][:, i].mean())
        assert mean == pytest.approx(rows[smec][str(d)]["ndcg@10"], abs=1e-6)
        pooled = [
            np.concatenate([saved[t][n][:, i] for t in targets], axis=1) for n in (smec, base)
        ]
        assert doc["cross"]["pooled_vs_pca"][smec][str(d)]["all"] == stats.paired_bootstrap(*pooled)
    assert set(doc["cross"]["pooled_vs_pca"]) == names - {base}
    # the ceiling row: in every column, the uncompressed embeddings' own per-query scores
    full = Evaluator(targets["other"], split="test").per_query(Truncate(), 32)["ndcg@10"]
    ceiling = saved["other"]["full size (no compression)"]
    assert ceiling.shape == (1, len(cfg.ladder), len(full))
    np.testing.assert_allclose(ceiling[0], np.broadcast_to(full, ceiling[0].shape), atol=1e-6)
    # top-10 agreement with that ceiling: all of it for itself, less for PCA at 16 dims
    for d in cfg.ladder:
        assert rows["full size (no compression)"][str(d)]["agree@10"] == 1.0
    assert 0.0 < rows["pca (fitted on target)"]["16"]["agree@10"] < 1.0
    # keeping the prefix of the original dims is truncation: same scores as the baseline
    trunc = Evaluator(synthetic).evaluate({"t": Truncate()}, (16, 8))["t"]
    assert doc["ads"]["ndcg"]["prefix"] == trunc
    assert set(doc["ads"]["ndcg"]) == {
        "ads",
        "ads_no_early_stop",
        "prefix",
        "top_variance",
        "ware_top",
    }
    report = (tmp_path / "analysis.md").read_text()
    assert f"{rows['truncate']['8']['ndcg@10']:.4f}" in report
    assert f"{doc['memory']['128']['step_ms']:.1f}" in report
    # the SciFact-trained compressors are the reproduce runs of each seed: rerunning reuses them
    for seed in (0, 1):
        assert (tmp_path / "runs" / f"smec-s{seed}" / "train" / "checkpoints").is_dir()


@pytest.mark.slow
def test_query_log_analysis_scores_each_held_out_half_apart_by_topic(tmp_path, synthetic):
    """The query-log analysis: the halves partition the judged training queries; "log
    topics" is a brute-force check of shared relevant documents; the log pool holds the log
    half only; share 0 is distill_pseudo itself (same scores as fitting it directly); every
    mean and interval is recomputed from the saved per-query scores."""
    from smec_jax import methods
    from smec_jax.studies.analyses import query_log
    from smec_jax.training import batches

    cfg = tiny_config()
    a, b = query_log.halves(synthetic, 0)
    judged = synthetic.judged_queries("train")
    assert sorted(a + b) == sorted(judged) and not set(a) & set(b) and abs(len(a) - len(b)) <= 1
    rel = {q: {d for d, r in synthetic.qrels["train"][q].items() if r > 0} for q in judged}
    want = [any(rel[q] & rel[p] for p in a) for q in b]
    assert query_log.on_log_topics(synthetic, b, a).tolist() == want and 0 < sum(want) < len(b)
    pool, _ = batches.unlabelled_queries(
        query_log.with_log(synthetic, a), None, "train", "train+pseudo"
    )
    log_rows = synthetic.queries[synthetic.query_rows([q for q in synthetic.query_ids if q in a])]
    np.testing.assert_array_equal(pool[len(synthetic.pseudo_queries) :], log_rows)

    doc = analyses.run(cfg, str(tmp_path), ["query_log"], log_shares=(0.5,), seeds=(0,))[
        "query_log"
    ]
    assert doc["shares"] == ["0.0", "0.5"] and sum(doc["counts"].values()) == len(judged)
    assert (tmp_path / "query_log.png").stat().st_size > 1000
    with np.load(tmp_path / "query_log_per_query.npz") as f:
        scored, new = list(f["qids"]), f["unseen"].astype(bool)
        saved = {n: f[n] for n in ("share_0.0", "share_0.5")}
    assert sorted(scored) == sorted(judged)
    for i, d in enumerate(cfg.ladder):
        for group, mask in (("log topics", ~new), ("new topics", new)):
            got = doc["means"][group]["0.5"][str(d)]
            assert got == pytest.approx(float(saved["share_0.5"][i, mask].mean()), abs=1e-6)
            assert doc["vs_none"][group]["0.5"][str(d)] == stats.paired_bootstrap(
                saved["share_0.5"][i, mask], saved["share_0.0"][i, mask]
            )
    direct_cfg = methods.get("distill_pseudo").resolve(cfg)
    direct = methods.get("distill_pseudo").fit(
        direct_cfg, synthetic, tmp_path / "dp", verbose=False
    )
    ev = Evaluator(synthetic, "train")
    held = scored[: len(b)]  # the first half scored is b (a was its log)
    for i, d in enumerate(cfg.ladder):
        np.testing.assert_allclose(
            ev.per_query(direct.compressor, d, held)["ndcg@10"],
            saved["share_0.0"][i, : len(b)],
            atol=1e-6,
        )
    assert "## Query log" in (tmp_path / "analysis.md").read_text()
    again = analyses.run(cfg, str(tmp_path), ["query_log"], log_shares=(0.5,))["query_log"]
    assert again == doc  # every fit cached
    cfg.train.lr *= 2
    with pytest.raises(ValueError, match="written with another config; use a fresh --workdir"):
        analyses.run(cfg, str(tmp_path), ["query_log"], log_shares=(0.5,))
