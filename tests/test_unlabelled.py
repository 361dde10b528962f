"""Compressors that use unlabelled queries: the closed-form score-preserving maps against
their definition (brute-force score errors, the PCA special case, the Evaluator's inner
product search against a numpy loop), and the listwise distillation term against a loop,
its inputs (never a validation query) and its training effect."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smec_jax import methods
from smec_jax.core import smrl
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.methods import closed_form, score_preserving
from smec_jax.training import batches, objective, splits, train
from tests.helpers import tiny_config


def _data(n_docs=300, n_q=200, dim=12, seed=0, queries=None) -> RetrievalData:
    """Anisotropic corpus and queries pointing elsewhere than the corpus varies most."""
    rng = np.random.default_rng(seed)
    corpus = rng.normal(size=(n_docs, dim)) * np.linspace(3, 0.3, dim) + 0.5
    if queries is None:
        queries = rng.normal(size=(n_q, dim)) * np.linspace(0.3, 3, dim)
    ids = [f"d{i}" for i in range(n_docs)]
    qids = [f"q{i}" for i in range(len(queries))]
    train_q = {q: {ids[i % n_docs]: 1} for i, q in enumerate(qids[: len(qids) // 2])}
    test_q = {q: {ids[(7 * i) % n_docs]: 1} for i, q in enumerate(qids[len(qids) // 2 :])}
    return RetrievalData(
        "toy", "enc", ids, corpus.astype(np.float32), qids, queries.astype(np.float32),
        {"train": train_q, "test": test_q},
    )  # fmt: skip


def _score_error(data, q_fn, d_fn, dim) -> float:
    """Brute force: mean over every (training query, doc) pair of the squared error of the
    centred score q . (d - mu), the quantity score_svd minimises."""
    q, _ = score_preserving.training_queries(data)
    c = np.asarray(data.corpus, np.float64)
    true = q @ (c - c.mean(0)).T
    approx = np.asarray(q_fn(q, dim), np.float64) @ np.asarray(d_fn(c, dim), np.float64).T
    return float(np.mean((true - approx) ** 2))


def test_score_svd_is_the_rank_d_optimum_of_the_score_error_at_every_size(monkeypatch):
    """Without shrinkage, the brute-force error of score_svd at size d equals the sum of the
    discarded squared singular values (Eckart-Young), and no PCA projection of the same
    size does better; every size is a prefix of the full map."""
    monkeypatch.setattr(score_preserving, "SHRINK", 0.0)
    data = _data()
    comp, source = score_preserving.fit_score_svd(data)
    assert source == "100 training queries"
    s_q, s_c, _, _ = score_preserving.moments(data)
    sv = np.linalg.svd(
        score_preserving._sym_power(s_q, 0.5) @ score_preserving._sym_power(s_c, 0.5),
        compute_uv=False,
    )
    pca = closed_form.fit_pca_corpus(data.corpus)
    w = np.asarray(pca.components, np.float64)
    mu = np.asarray(pca.mean, np.float64)
    for d in (2, 4, 8):
        err = _score_error(
            data, lambda x, k: comp.project_queries(x, k), lambda x, k: comp.project(x, k), d
        )
        np.testing.assert_allclose(err, np.sum(sv[d:] ** 2), rtol=1e-3)
        pca_err = _score_error(data, lambda x, k: x @ w[:, :k], lambda x, k: (x - mu) @ w[:, :k], d)
        assert err < pca_err, d
        full = np.asarray(comp.project(jnp.asarray(data.corpus), 12))
        np.testing.assert_allclose(
            np.asarray(comp.project(jnp.asarray(data.corpus), d)), full[:, :d], atol=1e-5
        )


def test_score_pca_is_pca_when_queries_vary_like_the_corpus():
    """With the queries being the centred corpus itself, S_q = S_c, so the axes of
    sym(S_q S_c) = S_c^2 are PCA's (up to sign)."""
    rng = np.random.default_rng(1)
    corpus = rng.normal(size=(400, 8)) * np.linspace(3, 0.5, 8)
    corpus -= corpus.mean(0)
    data = _data(n_docs=400, dim=8, queries=corpus)
    data = RetrievalData(
        "toy", "enc", data.corpus_ids, corpus.astype(np.float32), data.query_ids,
        corpus.astype(np.float32), data.qrels | {"train": {q: {"d0": 1} for q in data.query_ids}},
    )  # fmt: skip
    sp, _ = score_preserving.fit_score_pca(data)
    pca = closed_form.fit_pca_corpus(data.corpus)
    cos = np.abs(np.sum(np.asarray(sp.components) * np.asarray(pca.components), axis=0))
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)


def test_the_evaluator_scores_an_asymmetric_map_by_its_inner_products():
    """score_svd through the Evaluator ranks exactly as a numpy loop over queries ranks
    (q G_q) . ((d - mu) G_d), the query map on the query side and no normalisation."""
    data = _data(seed=3)
    comp, _ = score_preserving.fit_score_svd(data)
    comp = dataclasses.replace(comp, metric="ip")
    ev = Evaluator(data, "test", ties="row")
    _, rows = ev.search(comp, 4, 10)
    q = np.asarray(data.queries[data.query_rows(ev.qids)], np.float64)
    qv = q @ np.asarray(comp.q_map, np.float64)[:, :4]
    dv = (np.asarray(data.corpus, np.float64) - np.asarray(comp.mean)) @ np.asarray(
        comp.d_map, np.float64
    )[:, :4]
    for i in range(len(q)):
        expect = np.argsort(-(dv @ qv[i]), kind="stable")[:10]
        np.testing.assert_array_equal(rows[i], expect)


def test_score_methods_read_no_judgment_and_fall_back_to_the_corpus():
    """The fit depends on which queries are in the training split, not on their judgments;
    a dataset without a training split uses the queries no split judges (a query log, never
    the test queries), and with none of those the corpus as pseudo-queries."""
    data = _data(seed=4)
    other = RetrievalData(
        "toy", "enc", data.corpus_ids, data.corpus, data.query_ids, data.queries,
        {"train": {q: {"d5": 2, "d9": 0} for q in data.qrels["train"]}, "test": data.qrels["test"]},
    )  # fmt: skip
    a, _ = score_preserving.fit_score_svd(data)
    b, _ = score_preserving.fit_score_svd(other)
    np.testing.assert_array_equal(np.asarray(a.q_map), np.asarray(b.q_map))
    test_only = RetrievalData(
        "toy", "enc", data.corpus_ids, data.corpus, data.query_ids, data.queries,
        {"test": data.qrels["test"]},
    )  # fmt: skip
    _, source = score_preserving.fit_score_pca(test_only)
    log = [q for q in data.query_ids if q not in data.qrels["test"]]
    assert log and source == f"{len(log)} logged queries (judged in no split)"
    got, _ = batches.unlabelled_queries(test_only, None, "train", "train")
    np.testing.assert_array_equal(got, data.queries[data.query_rows(log)])
    judged_only = data.query_rows(list(data.qrels["test"]))
    no_log = RetrievalData(
        "toy", "enc", data.corpus_ids, data.corpus,
        [data.query_ids[i] for i in judged_only], data.queries[judged_only],
        {"test": data.qrels["test"]},
    )  # fmt: skip
    _, source = score_preserving.fit_score_pca(no_log)
    assert source == "300 corpus docs as pseudo-queries"


def _distill_loop(batch, y_fn, masks, temperature, source_weight=0.0):
    """KL(p || p_m) per query by explicit loops, summed over masks; with ``source_weight``
    w, p is (1 - w) p + w on the query's source candidate ``u_src`` (where it has one);
    a query's own candidate ``u_self`` (where the batch has them) is not a candidate."""
    q, d = np.asarray(batch["u_q"], np.float64), np.asarray(batch["u_d"], np.float64)
    valid = np.asarray(batch["u_valid"])
    yq, yd = (np.asarray(y_fn(x), np.float64) for x in (batch["u_q"], batch["u_d"]))
    total = 0.0
    for mask in masks:
        m = np.ones(yq.shape[1]) if mask is None else np.asarray(mask)
        kls = []
        for i in range(len(q)):
            own = int(batch["u_self"][i]) if "u_self" in batch else -1
            cand = [j for j in range(len(d)) if valid[j] and j != own]
            t = np.array([q[i] @ d[j] / np.linalg.norm(q[i]) / np.linalg.norm(d[j]) for j in cand])  # fmt: skip
            s = np.array([(yq[i] * m) @ (yd[j] * m) / np.linalg.norm(yq[i] * m) / np.linalg.norm(yd[j] * m) for j in cand])  # fmt: skip
            p = np.exp(t / temperature) / np.exp(t / temperature).sum()
            src = int(batch["u_src"][i]) if source_weight else -1
            if src >= 0:
                at = cand.index(src)
                p = (1 - source_weight) * p + source_weight * (np.arange(len(p)) == at)
            ps = np.exp(s / temperature) / np.exp(s / temperature).sum()
            kls.append(np.sum(p * np.log(p / ps)))
        total += np.mean(kls)
    return total


def test_distill_term_equals_a_loop_over_queries_candidates_and_sizes():
    from smec_jax.core import model

    rng = np.random.default_rng(0)
    params = model.init_params(jax.random.key(0), "linear", 16, 16, 0)
    params = jax.tree.map(lambda p: p + 0.3 * rng.normal(size=p.shape).astype(np.float32), params)
    batch = {
        "u_q": jnp.asarray(rng.normal(size=(4, 16)), jnp.float32),
        "u_d": jnp.asarray(rng.normal(size=(9, 16)), jnp.float32),
        "u_valid": jnp.asarray([True] * 7 + [False, True]),
    }
    kept = np.arange(16)
    masks = (None, jnp.asarray(np.arange(16) < 8, jnp.float32))
    got = objective.distill_term(params, batch, kept, masks, 0.1)
    expect = _distill_loop(batch, lambda x: model.apply_cols(params, x, kept), masks, 0.1)
    np.testing.assert_allclose(float(got), expect, rtol=2e-4)
    # inverse cloze: part of each teacher moved onto the query's source candidate (query 2
    # has none and keeps its teacher); a different loss from the plain one
    batch["u_src"] = jnp.asarray([3, 8, -1, 0], jnp.int32)
    got_src = objective.distill_term(params, batch, kept, masks, 0.1, source_weight=0.3)
    expect_src = _distill_loop(
        batch, lambda x: model.apply_cols(params, x, kept), masks, 0.1, source_weight=0.3
    )
    np.testing.assert_allclose(float(got_src), expect_src, rtol=2e-4)
    assert abs(expect_src - expect) > 0.05
    # a query that is a document leaves that document out, for teacher and student (query
    # 1's own document is not among the candidates); again a different loss
    del batch["u_src"]
    batch["u_self"] = jnp.asarray([2, -1, 8, 0], jnp.int32)
    got_self = objective.distill_term(params, batch, kept, masks, 0.1)
    expect_self = _distill_loop(batch, lambda x: model.apply_cols(params, x, kept), masks, 0.1)
    np.testing.assert_allclose(float(got_self), expect_self, rtol=2e-4)
    assert abs(expect_self - expect) > 1e-3  # well beyond the tolerance above (4e-4)


def test_distillation_queries_are_the_training_ones_never_validation(monkeypatch, synthetic):
    seen = {}
    real = batches.unlabelled_queries

    def spy(data, qids=None, split="train", source="train", log_share=0.0):
        seen["qids"] = list(qids)
        return real(data, qids, split, source, log_share)

    monkeypatch.setattr(batches, "unlabelled_queries", spy)
    cfg = methods.get("smec_distill").resolve(tiny_config())
    cfg.train.steps_per_stage = 2
    train.train(cfg, synthetic, None, verbose=False)
    vs = splits.split_train_val(
        synthetic, "train", cfg.train.val_fraction, cfg.seed, cfg.train.val_split
    )
    assert seen["qids"] == vs.train and not set(seen["qids"]) & set(vs.val)
    rows, source = real(synthetic, None, "nosuchsplit")
    assert source.endswith("corpus docs as pseudo-queries") and rows.shape == synthetic.corpus.shape


def test_distillation_alone_brings_the_compressed_ranking_closer_to_the_full_one(synthetic):
    """The ``distill`` method (no labels, no memory) lowers the distillation loss of its
    smallest size on held-out queries against its PCA initialisation."""
    cfg = methods.get("distill").resolve(tiny_config())
    cfg.train.steps_per_stage = 40
    res = train.train(cfg, synthetic, None, verbose=False)
    queries = synthetic.queries[synthetic.query_rows(synthetic.judged_queries("test"))]
    ds = batches.distill_batches(
        synthetic, queries, batch=32, top=4, n_random=64, seed=0
    )  # test queries: unseen by training (it used the train split's)
    batch = {k: jnp.asarray(v) for k, v in ds[0].items()}
    d = cfg.ladder[-1]
    pca = closed_form.fit_pca_corpus(synthetic.corpus)

    def kl(comp):  # the distillation loss of comp's size-d outputs, at the default temperature
        yq, yd = comp.compress(batch["u_q"], d), comp.compress(batch["u_d"], d)
        teacher = jax.nn.log_softmax(objective.cos_matrix(batch["u_q"], batch["u_d"]) / 0.05)
        student = jax.nn.log_softmax(objective.cos_matrix(yq, yd) / 0.05)
        return float(jnp.mean(jnp.sum(jnp.exp(teacher) * (teacher - student), -1)))

    assert kl(res.compressor) < 0.9 * kl(pca)
    assert smrl.sizes_for(cfg.ladder, synthetic.dim)[-1] == d


@pytest.mark.parametrize("field", ["distill_batch", "distill_random"])
def test_a_distillation_batch_the_devices_cannot_split_is_one_line(field, synthetic):
    from smec_jax.training import checks

    cfg = methods.get("smec_distill").resolve(tiny_config())
    cfg.train[field] = 12
    with pytest.raises(ValueError, match=f"--config.train.{field} 12 is not divisible by the 8"):
        checks.validate_trainer_config(cfg, synthetic, 8)
