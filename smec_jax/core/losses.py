"""The two SMEC losses, vectorised (DESIGN.md 1 and 2.7).

Graded pairwise rank loss, for one size m:

  L_rank = mean over valid (i, j, k) with y_ij > y_ik of (y_ij - y_ik) * log(1 + exp(s_ik - s_ij))

where s is the scaled cosine of compressed query i and doc j. Only docs with y_ij > 0 can be
the better side of a pair, so the batch lists each query's positive columns (``pos_idx``) and
the loss compares them with every column: O(B * P * C) instead of O(B * C^2).

Unsupervised S-XBM loss: mean over samples i and memory neighbours j of
|Sim(e_i, e_j) - Sim(c_i, c_j)| (e original, c compressed, Sim cosine).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def rank_loss(
    scores_bc: jax.Array,
    grades_bc: jax.Array,
    valid_bc: jax.Array,
    pos_idx_bp: jax.Array,
    pos_ok_bp: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Mean graded pairwise logistic loss over valid pairs.

    Args:
      scores_bc: (B, C) query-doc scores. grades_bc: (B, C) graded relevance (0 = not
        relevant). valid_bc: (B, C) which columns count for each query.
      pos_idx_bp: (B, P) columns holding each query's positives (grade > 0) — every valid
        positive column of the row must appear here. pos_ok_bp: (B, P) real entries.

    Returns:
      (mean loss, number of valid pairs).
    """
    b, c = scores_bc.shape
    chex.assert_shape([grades_bc, valid_bc], (b, c))
    chex.assert_equal_shape([pos_idx_bp, pos_ok_bp])
    grades = grades_bc.astype(jnp.float32)
    s_pos = jnp.take_along_axis(scores_bc, pos_idx_bp, axis=1)  # (B, P)
    y_pos = jnp.take_along_axis(grades, pos_idx_bp, axis=1)
    dy = y_pos[:, :, None] - grades[:, None, :]  # (B, P, C)
    pair = pos_ok_bp[:, :, None] & valid_bc[:, None, :] & (dy > 0)
    per_pair = dy * jax.nn.softplus(scores_bc[:, None, :] - s_pos[:, :, None])
    n = jnp.sum(pair)
    return jnp.sum(jnp.where(pair, per_pair, 0.0)) / jnp.maximum(n, 1), n


def unsup_loss(orig_sim: jax.Array, comp_sim: jax.Array, weight: jax.Array) -> jax.Array:
    """Mean |Sim(e_i, e_j) - Sim(c_i, c_j)| over the (sample, neighbour) entries, each
    weighted by ``weight``: a validity mask, or the number of memory entries it stands for
    (0 = none)."""
    chex.assert_equal_shape([orig_sim, comp_sim, weight])
    w = weight.astype(comp_sim.dtype)
    diff = jnp.where(w > 0, w * jnp.abs(orig_sim - comp_sim), 0.0)
    return jnp.sum(diff) / jnp.maximum(jnp.sum(w), 1)


def similarity_preservation(
    e_nd: jax.Array, c_nd: jax.Array, masks, k: int | None = None, valid_n: jax.Array | None = None
) -> jax.Array:
    """Matryoshka-Adaptor's in-batch losses, summed over sizes.

    mean over pairs (i, j != i) of |cos(e_i, e_j) - cos(c_i * m, c_j * m)| for each size mask
    m (None = all dims): every pair (L_pair), or only each row's k most similar rows under
    the original embeddings (L_topk). Rows where ``valid_n`` is False (padding) take no part.
    """
    n = e_nd.shape[0]
    valid = jnp.ones((n,), bool) if valid_n is None else valid_n
    unit = lambda x: x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=1, keepdims=True), 1e-24))
    en = unit(e_nd)
    orig = en @ en.T
    usable = ~jnp.eye(n, dtype=bool) & valid[:, None] & valid[None, :]
    if k is None:
        pick = usable
    else:
        top, nbr = jax.lax.top_k(jnp.where(usable, orig, -jnp.inf), k)
        pick = jnp.zeros((n, n), bool).at[jnp.arange(n)[:, None], nbr].set(jnp.isfinite(top))
        pick = pick & usable
    total = 0.0
    for m in masks:
        cn = unit(c_nd if m is None else c_nd * m)
        diff = jnp.abs(orig - cn @ cn.T)
        total = total + jnp.sum(jnp.where(pick, diff, 0.0)) / jnp.maximum(jnp.sum(pick), 1)
    return total


def reconstruction(e_nd: jax.Array, c_nd: jax.Array) -> jax.Array:
    """Matryoshka-Adaptor's L_rec: mean absolute difference between adapted and original."""
    return jnp.mean(jnp.abs(c_nd - e_nd))
