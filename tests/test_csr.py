"""CSR's pieces against literal computations: TopK keeps the k largest activations, the
loss is reconstruction + a quarter-weighted wider reconstruction + InfoNCE over the batch."""

import jax.numpy as jnp
import numpy as np
import pytest

from smec_jax.methods import csr


def test_topk_keeps_each_rows_k_largest_activations():
    rng = np.random.default_rng(0)
    h = rng.random((6, 40)).astype(np.float32)
    got = np.asarray(csr._topk(jnp.asarray(h), 5))
    for i in range(6):
        keep = np.argsort(-h[i])[:5]
        want = np.zeros(40, np.float32)
        want[keep] = h[i, keep]
        np.testing.assert_array_equal(got[i], want)
    assert csr.bytes_per_vector(8) == 32


def test_loss_equals_a_loop():
    rng = np.random.default_rng(1)
    d, hidden, nq, nd, k, tau = 6, 16, 3, 5, 2, 0.5
    corpus = rng.normal(size=(50, d)).astype(np.float32)
    import jax

    params = csr.init_params(jax.random.key(0), corpus, hidden)
    params = {kk: np.asarray(v) for kk, v in params.items()}
    q, docs = (
        rng.normal(size=(nq, d)).astype(np.float32),
        rng.normal(size=(nd, d)).astype(np.float32),
    )
    grades = np.zeros((nq, nd), np.int32)
    grades[0, [0, 1]] = 1
    grades[1, 2] = 2
    grades[2, 4] = 1
    batch = {
        "q": q,
        "d": docs,
        "grades": grades,
        "valid": np.ones((nq, nd), bool),
        "pos_idx": np.asarray([[0, 1], [2, 0], [4, 0]]),
        "pos_ok": np.asarray([[True, True], [True, False], [True, False]]),
    }
    got, _ = csr.make_loss(k, 0.7, tau)(params, batch)

    def code(x, kk):
        h = np.maximum((x - params["b_pre"]) @ params["w_enc"] + params["b_enc"], 0)
        z = np.zeros_like(h)
        top = np.argsort(-h)[:kk]
        z[top] = h[top]
        return z

    x = np.concatenate([q, docs])
    rec = np.mean([np.sum((r - (code(r, k) @ params["w_dec"] + params["b_pre"])) ** 2) for r in x])
    rec4 = np.mean(
        [np.sum((r - (code(r, 4 * k) @ params["w_dec"] + params["b_pre"])) ** 2) for r in x]
    )
    unit = lambda v: v / max(np.linalg.norm(v), 1e-12)
    nce = []
    for i in range(nq):
        t = batch["pos_idx"][i, 0]
        s = [unit(code(q[i], k)) @ unit(code(docs[j], k)) / tau for j in range(nd)]
        allowed = [j for j in range(nd) if j == t or grades[i, j] == 0]
        nce.append(-(s[t] - np.log(sum(np.exp(s[j]) for j in allowed))))
    want = rec + rec4 / 8 + 0.7 * np.mean(nce)
    np.testing.assert_allclose(float(got), want, rtol=1e-4)


def test_dead_latents_reconstruct_the_residual_as_a_loop():
    """L_aux: each row's top aux_k activations among the dead latents, decoded without the
    pre-bias, against the residual; 0 when nothing is dead."""
    import jax

    rng = np.random.default_rng(2)
    d, hidden, n, aux_k = 5, 12, 4, 3
    params = csr.init_params(jax.random.key(1), rng.normal(size=(20, d)), hidden)
    w_dec = np.asarray(params["w_dec"])
    h = np.maximum(rng.normal(size=(n, hidden)), 0).astype(np.float32)
    residual = rng.normal(size=(n, d)).astype(np.float32)
    dead = np.zeros(hidden, bool)
    dead[[0, 3, 4, 7, 8, 11]] = True
    got = float(csr.aux_loss(params, jnp.asarray(h), jnp.asarray(residual), dead, aux_k))
    errs = []
    for i in range(n):
        z = np.zeros(hidden, np.float32)
        cand = [j for j in np.argsort(-h[i]) if dead[j]][:aux_k]
        z[cand] = h[i, cand]
        errs.append(np.sum((residual[i] - z @ w_dec) ** 2))
    np.testing.assert_allclose(got, np.mean(errs), rtol=1e-5)
    none = float(csr.aux_loss(params, jnp.asarray(h), jnp.asarray(residual), ~dead & dead, 3))
    assert none == 0.0


def test_the_auxiliary_loss_trains_only_when_latents_die(synthetic):
    """With aux_k > 0 and latents declared dead after one idle step the fit differs from
    the plain one; with a dead_steps longer than the run nothing is ever dead, and the fit
    is the plain one bit for bit."""
    from tests.helpers import tiny_config

    def fit(**csr_fields):
        cfg = tiny_config()
        cfg.csr.update(csr_fields)
        return csr.fit_csr(cfg, synthetic, None, verbose=False).compressor.params

    plain = fit()
    never = fit(aux_k=8, aux_weight=1.0, dead_steps=10_000)
    soon = fit(aux_k=8, aux_weight=1.0, dead_steps=1)
    for k in plain:
        np.testing.assert_array_equal(never[k], plain[k])
    assert not np.array_equal(soon["w_dec"], plain["w_dec"])
    with pytest.raises(ValueError, match="csr.aux_k = 4096 must be between 0"):
        fit(aux_k=4096)
