"""Each loss equals a brute-force loop implementation, in value and in gradient."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smec_jax.core import losses, memory, model
from smec_jax.training import objective


def rank_loss_brute(scores, grades, valid):
    """The paper's formula, literally: every (i, j, k) with y_ij > y_ik, mean over pairs."""
    total, n = 0.0, 0
    b, c = grades.shape
    for i in range(b):
        for j, k in itertools.product(range(c), range(c)):
            if valid[i, j] and valid[i, k] and grades[i, j] > grades[i, k]:
                total = total + (grades[i, j] - grades[i, k]) * jnp.log1p(
                    jnp.exp(scores[i, k] - scores[i, j])
                )
                n += 1
    return total / n


def _toy_batch(rng, b=3, c=7, p=3):
    grades = rng.integers(0, 4, size=(b, c)) * (rng.random((b, c)) < 0.4)
    valid = rng.random((b, c)) < 0.9
    pos_idx = np.zeros((b, p), np.int32)
    pos_ok = np.zeros((b, p), bool)
    for i in range(b):
        cols = np.flatnonzero((grades[i] > 0) & valid[i])[:p]
        valid[i, np.flatnonzero((grades[i] > 0) & valid[i])[p:]] = False
        pos_idx[i, : len(cols)], pos_ok[i, : len(cols)] = cols, True
    return grades.astype(np.int32), valid, pos_idx, pos_ok


def test_rank_loss_equals_brute_force_value_and_gradient():
    rng = np.random.default_rng(0)
    for _ in range(5):
        grades, valid, pos_idx, pos_ok = _toy_batch(rng)
        if not pos_ok.any():
            continue
        scores = jnp.asarray(rng.normal(size=grades.shape), jnp.float32)
        args = tuple(jnp.asarray(a) for a in (grades, valid, pos_idx, pos_ok))
        fast = lambda s, args=args: losses.rank_loss(s, *args)[0]
        slow = lambda s, g=grades, v=valid: rank_loss_brute(s, g, v)
        np.testing.assert_allclose(fast(scores), slow(scores), rtol=1e-5)
        np.testing.assert_allclose(
            jax.grad(fast)(scores), jax.grad(slow)(scores), rtol=1e-4, atol=1e-6
        )


def unsup_brute(e, c, nbr, ok):
    total, n = 0.0, 0
    for i in range(nbr.shape[0]):
        for j in range(nbr.shape[1]):
            if ok[i, j]:
                cos = lambda a, b: jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
                total = total + jnp.abs(cos(e[i], e[nbr[i, j]]) - cos(c[i], c[nbr[i, j]]))
                n += 1
    return total / n


def test_sxbm_term_equals_brute_force():
    """The step's S-XBM term (neighbours by original cosine, excluding the sample's own id,
    compressed with the current params at two sizes) equals the formula on explicit loops."""
    rng = np.random.default_rng(1)
    d, q, n, k = 6, 9, 4, 3
    entries = rng.normal(size=(q, d)).astype(np.float32)
    entries /= np.linalg.norm(entries, axis=1, keepdims=True)
    mem = memory.enqueue(memory.init(q, d), jnp.asarray(entries), jnp.arange(q))
    x = entries[:n] + 0.1 * rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.array([0, 1, 100, 101])  # two samples are in the memory: they must skip themselves
    params = {
        "w": jnp.asarray(rng.normal(size=(d, d)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=d), jnp.float32),
    }
    kept = np.array([0, 2, 3, 5])
    mask = jnp.asarray([1.0, 0.0, 1.0, 1.0])

    def term(p):
        y = model.apply_cols(p, jnp.asarray(x), kept)
        return objective.sxbm_term(
            mem, jnp.asarray(x), jnp.asarray(ids), jnp.ones(n, bool), y, p, kept, (None, mask), k
        )

    def brute(p):
        all_e = np.concatenate([x, entries])  # samples then memory rows
        c_all = model.apply_cols(p, jnp.asarray(all_e), kept)
        nbr = np.zeros((n, k), int)
        for i in range(n):
            s = entries @ x[i]
            if ids[i] < q:
                s[ids[i]] = -np.inf
            nbr[i] = n + np.argsort(-s, kind="stable")[:k]
        ok = np.ones((n, k), bool)
        return unsup_brute(all_e, c_all, nbr, ok) + unsup_brute(all_e, c_all * mask, nbr, ok)

    want, want_g = brute(params), jax.grad(brute)(params)
    np.testing.assert_allclose(term(params), want, rtol=1e-5)
    g = jax.grad(term)(params)
    for key in ("w", "b"):
        np.testing.assert_allclose(g[key], want_g[key], rtol=1e-4, atol=1e-6)


def test_neighbour_outputs_gather_orders_agree():
    rng = np.random.default_rng(2)
    params = {"w": jnp.asarray(rng.normal(size=(5, 5)), jnp.float32), "b": jnp.zeros(5)}
    entries = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    kept = np.array([1, 4])
    few = jnp.asarray([[0, 5]])  # n*k = 2 < 6: auto gathers then compresses
    many = jnp.asarray(rng.integers(0, 6, size=(4, 3)))  # n*k = 12 >= 6: auto compresses the memory
    for idx in (few, many):
        want = np.asarray(model.apply(params, entries))[:, kept][np.asarray(idx)]
        w = jnp.asarray([1.0, 0.0])
        for mode in ("auto", "gather", "memory"):
            got, (sq,) = objective.neighbour_outputs(params, entries, idx, kept, mode, [w])
            np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=mode)
            np.testing.assert_allclose(sq, want[..., 0] ** 2, rtol=1e-5, err_msg=mode)


def test_matryoshka_adaptor_losses_equal_loops():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(7, 6)).astype(np.float32)
    c = e + 0.3 * rng.normal(size=(7, 6)).astype(np.float32)
    masks = (None, jnp.asarray([1, 1, 1, 0, 0, 0], jnp.float32))
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    def loop(k):
        total = 0.0
        for m in (np.ones(6), np.asarray(masks[1])):
            vals = []
            for i in range(7):
                others = [j for j in range(7) if j != i]
                if k is not None:
                    others = sorted(others, key=lambda j: -cos(e[i], e[j]))[:k]
                vals += [abs(cos(e[i], e[j]) - cos(c[i] * m, c[j] * m)) for j in others]
            total += np.mean(vals)
        return total

    for k in (None, 3):
        got = float(losses.similarity_preservation(jnp.asarray(e), jnp.asarray(c), masks, k))
        np.testing.assert_allclose(got, loop(k), rtol=1e-5)
    np.testing.assert_allclose(
        float(losses.reconstruction(jnp.asarray(e), jnp.asarray(c))),
        np.abs(c - e).mean(),
        rtol=1e-6,
    )


def test_binary_quantization_aware_outputs_are_signs_with_a_straight_through_gradient():
    """objective.outputs(quantize="binary"): the values are the signs of the float outputs,
    and the gradient of any loss of them is the float map's vector-Jacobian product of that
    loss's gradient at the signs (straight-through)."""
    from smec_jax.training import objective

    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(5, 6)), jnp.float32)
    params = {
        "w": jnp.asarray(rng.normal(size=(6, 6)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=6), jnp.float32),
    }
    kept = np.array([0, 2, 3, 5])
    target = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    loss = lambda s: jnp.sum((s - target) ** 2 * jnp.arange(1, 5))
    y = model.apply_cols(params, x, kept)
    np.testing.assert_array_equal(objective.outputs(params, x, kept, "binary"), np.sign(y))
    g = jax.grad(lambda p: loss(objective.outputs(p, x, kept, "binary")))(params)
    _, vjp = jax.vjp(lambda p: model.apply_cols(p, x, kept), params)
    (want,) = vjp(jax.grad(loss)(jnp.sign(y)))
    for key in ("w", "b"):
        np.testing.assert_allclose(g[key], want[key], rtol=1e-6)
    np.testing.assert_array_equal(objective.outputs(params, x, kept), y)  # "none": untouched


@pytest.mark.parametrize("precision", ["int8", "int4", "int2"])
def test_scalar_quantization_aware_outputs_are_the_served_codes_with_a_straight_through_gradient(
    precision,
):
    """objective.outputs(quantize=int8/int4/int2): the values are the decoded codes that
    smec_jax.core.codes makes when calibrated on the same rows (encode, then decode), a dim with
    no range included, and the gradient is the float map's (straight-through)."""
    from smec_jax.core import codes
    from smec_jax.training import objective

    rng = np.random.default_rng(11)
    n = 1000  # (n - 1) * i / L is never whole: no quantile edge sits on a value
    x = jnp.asarray(rng.normal(size=(n, 6)), jnp.float32)
    params = {
        "w": jnp.asarray(rng.normal(size=(6, 6)), jnp.float32).at[:, 3].set(0.0),
        "b": jnp.asarray(rng.normal(size=6), jnp.float32),
    }
    kept = np.array([0, 2, 3, 5])
    y = np.asarray(model.apply_cols(params, x, kept))
    cal = codes.calibrate(y, precision)
    want = codes.decode(codes.encode(y, cal), cal)
    got = np.asarray(objective.outputs(params, x, kept, precision))
    # equal up to float rounding: sums in another order (bin means), and XLA's division may
    # put a value a rounding error across an int8 code boundary (then it is one code off)
    diff = np.abs(got - want)
    off = diff > 1e-4 * (1 + np.abs(want))
    assert off.mean() <= 1e-3
    if precision == "int8":
        one_code = np.broadcast_to(cal.vdiff / 255, y.shape)
        np.testing.assert_allclose(diff[off], one_code[off], rtol=1e-3)
    else:
        assert not off.any()
    assert np.ptp(got[:, 2]) <= 1e-6  # the constant dim (w[:, 3] = 0) decodes to one value
    target = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    loss = lambda s: jnp.sum((s - target) ** 2)
    g = jax.grad(lambda p: loss(objective.outputs(p, x, kept, precision)))(params)
    _, vjp = jax.vjp(lambda p: model.apply_cols(p, x, kept), params)
    (ref,) = vjp(jax.grad(loss)(jnp.asarray(got)))
    for key in ("w", "b"):
        np.testing.assert_allclose(g[key], ref[key], rtol=1e-4, atol=1e-3)


def test_sxbm_term_from_neighbour_lists_equals_the_searched_term():
    """list mode gives the searched S-XBM term's value and gradient (ids held twice, self
    ids, padding rows), and falls back to the search where a list runs short."""
    from smec_jax.training import objective

    rng = np.random.default_rng(8)
    u, d, q, k = 30, 6, 12, 3
    table = rng.normal(size=(u, d)).astype(np.float32)
    table = jnp.asarray(table / np.linalg.norm(table, axis=1, keepdims=True))
    mem = memory.init(q, d, n_ids=u)
    for _ in range(4):  # wraps; ids repeat across calls
        ids = rng.choice(u, size=7, replace=False)
        mem = memory.enqueue(mem, table[ids], jnp.asarray(ids))
    anchors = jnp.asarray(rng.choice(u, size=8, replace=False))
    keep = jnp.asarray([True] * 7 + [False])
    params = {
        "w": jnp.asarray(rng.normal(size=(d, d)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=d), jnp.float32),
    }
    kept = np.array([0, 1, 3, 4, 5])
    masks = (None, jnp.asarray([1.0, 1.0, 0.0, 1.0, 0.0]))

    def term(p, mode, lists=None):
        y = model.apply_cols(p, table[anchors], kept)
        return objective.sxbm_term(
            mem, table[anchors], anchors, keep, y, p, kept, masks, k, mode, lists=lists
        )

    want, want_g = term(params, "memory"), jax.grad(term)(params, "memory")
    fulls = []
    for m in (29, 4):  # long lists; lists so short that some anchors fall back
        lists = memory.neighbour_lists(table, m)
        np.testing.assert_allclose(term(params, "list", lists), want, rtol=1e-6)
        g = jax.grad(term)(params, "list", lists)
        for key in ("w", "b"):
            np.testing.assert_allclose(g[key], want_g[key], rtol=1e-5, atol=1e-7)
        # the reported fallback: whether some kept anchor's list held fewer than k entries
        *_, full = objective.memory_neighbours(
            mem, table[anchors], anchors, keep, k, "list", None, lists
        )
        _, _, _, enough = memory.neighbours_from_lists(mem, anchors, *lists, k)
        assert float(full) == float(not np.all(np.asarray(enough)[:7])), m
        fulls.append(float(full))
    assert fulls == [0.0, 1.0]  # both paths taken
