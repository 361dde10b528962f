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


def unsup_loss(orig_sim: jax.Array, comp_sim: jax.Array, ok: jax.Array) -> jax.Array:
    """Mean |Sim(e_i, e_j) - Sim(c_i, c_j)| over valid (sample, neighbour) entries."""
    chex.assert_equal_shape([orig_sim, comp_sim, ok])
    diff = jnp.where(ok, jnp.abs(orig_sim - comp_sim), 0.0)
    return jnp.sum(diff) / jnp.maximum(jnp.sum(ok), 1)

