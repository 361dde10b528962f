"""ADS: exactly k distinct picks, gradients reach the logits, inference is deterministic."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smec_jax.core import ads


@pytest.mark.parametrize("n,k", [(8, 1), (16, 8), (384, 256), (64, 63)])
def test_training_mask_is_exactly_k_hot(n, k):
    logits = jax.random.normal(jax.random.key(0), (n,))
    for seed in range(5):
        m = ads.gumbel_topk_mask(jax.random.key(seed), logits, k, jnp.float32(0.5))
        chex.assert_shape(m, (n,))
        # straight-through: forward value is the hard mask (up to float rounding of h + r - r)
        np.testing.assert_allclose(np.asarray(m), np.round(np.asarray(m)), atol=1e-5)
        assert int(np.round(np.asarray(m)).sum()) == k
        assert set(np.unique(np.round(np.asarray(m)))) <= {0.0, 1.0}


def test_relaxed_topk_removes_what_it_took():
    """k successive softmaxes: total mass exactly k; each pick suppresses what earlier picks
    took, so at low temperature no entry is taken twice (the forward mask is hard anyway)."""
    scores = jnp.asarray([5.0, 4.9, 0.0, -1.0, -3.0])
    for tau in (1.0, 0.1, 0.01):
        r = ads.relaxed_topk(scores, 3, tau)
        np.testing.assert_allclose(float(r.sum()), 3.0, rtol=1e-5)
        if tau <= 0.01:  # near-tied logits need a low temperature to separate
            assert float(r.max()) <= 1.0 + 1e-3
    # at low temperature it approaches the hard top-3
    np.testing.assert_allclose(ads.relaxed_topk(scores, 3, 0.01), [1, 1, 1, 0, 0], atol=1e-3)


def test_logits_receive_nonzero_gradients():
    logits = jax.random.normal(jax.random.key(1), (32,))
    w = jax.random.normal(jax.random.key(2), (32,))

    def loss(z):
        return jnp.sum(ads.gumbel_topk_mask(jax.random.key(3), z, 8, jnp.float32(1.0)) * w)

    g = jax.grad(loss)(logits)
    assert np.all(np.isfinite(g)) and np.abs(np.asarray(g)).sum() > 1e-3


def test_inference_selection_is_deterministic_top_k():
    z = np.asarray([0.1, 3.0, -2.0, 3.0, 0.5, 2.0])
    sel = ads.select(z, 3)
    np.testing.assert_array_equal(sel, [1, 3, 5])  # ascending positions of the 3 largest
    np.testing.assert_array_equal(ads.select(z, 3), sel)
    hard = np.asarray(ads.hard_topk_mask(jnp.asarray(z), 3))
    np.testing.assert_array_equal(np.flatnonzero(hard), sel)


@pytest.mark.slow
def test_gumbel_topk_follows_the_logits():
    """Sampled selections favour high logits; at tau -> 0 they equal the inference top-k."""
    z = jnp.asarray([2.0, 1.0, 0.0, -1.0, -2.0, -3.0])
    counts = np.zeros(6)
    for s in range(300):
        counts += np.round(
            np.asarray(ads.gumbel_topk_mask(jax.random.key(s), z, 2, jnp.float32(1.0)))
        )
    assert np.all(np.diff(counts) <= 0) and counts[0] > 200
    cold = ads.gumbel_topk_mask(jax.random.key(7), z, 2, jnp.float32(1e-4))
    np.testing.assert_array_equal(np.flatnonzero(np.round(np.asarray(cold))), ads.select(z, 2))


def test_tau_schedule_anneals_from_start_to_end():
    taus = [float(ads.tau_schedule(jnp.float32(s), 100, 1.0, 0.1)) for s in (0, 50, 100, 150)]
    np.testing.assert_allclose(taus, [1.0, np.sqrt(0.1), 0.1, 0.1], rtol=1e-5)
