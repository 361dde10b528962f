"""ADS: adaptive dimension selection with Gumbel top-k and a straight-through gradient.

Stage t owns one logit per dimension kept so far (a vector of size d_{t-1}; the ADS param
tree has one leaf per stage). It picks which d_t of those survive (DESIGN.md 2.4):

* training forward: the *hard* k-hot mask of top-k(z + tau * G), G ~ Gumbel(0, 1): exactly
  k distinct dims, sampled from the Gumbel-top-k distribution of z / tau (sampling without
  replacement); as tau anneals (1.0 -> 0.1 per stage) the choice concentrates on the top
  logits.
* training backward: the gradient of a *relaxed* top-k of the same perturbed logits, k
  successive softmaxes that each remove the mass already taken (Xie & Ermon 2019):
  mask = hard + relaxed - stop_gradient(relaxed). The relaxed vector sums to k; at high
  tau one entry can collect more than 1 (soft removal), at low tau it tends to the hard
  k-hot. The forward mask is always exactly k distinct dims.
* inference: top-k of z, no noise. Once a stage ends its selection is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-20


def init_logits(sizes: Sequence[int]) -> dict[str, jax.Array]:
    """One zero logit vector per stage t >= 1, over the sizes[t-1] dims kept before it."""
    return {stage_name(t): jnp.zeros((sizes[t - 1],), jnp.float32) for t in range(1, len(sizes))}


def stage_name(t: int) -> str:
    return f"stage_{t}"


def relaxed_topk(scores: jax.Array, k: int, tau: float | jax.Array) -> jax.Array:
    """Soft k-hot vector: sum of k successive softmaxes without replacement.

    Args:
      scores: (n,) perturbed logits. k: picks. tau: softmax temperature.

    Returns:
      (n,) values in [0, 1] summing to k.
    """

    def body(carry, _):
        w, khot = carry
        onehot = jax.nn.softmax(w / tau)
        khot = khot + onehot
        w = w + jnp.log(jnp.maximum(1.0 - onehot, EPS))
        return (w, khot), None

    (_, khot), _ = jax.lax.scan(body, (scores, jnp.zeros_like(scores)), None, length=k)
    return khot


def hard_topk_mask(scores: jax.Array, k: int) -> jax.Array:
    """Exactly k-hot (n,) float mask of the k largest scores (ties: lower index)."""
    _, idx = jax.lax.top_k(scores, k)
    return jnp.zeros_like(scores).at[idx].set(1.0)


def gumbel_topk_mask(rng: jax.Array, logits: jax.Array, k: int, tau: jax.Array) -> jax.Array:
    """Training-time selection mask: hard k-hot forward, relaxed top-k gradient."""
    g = jax.random.gumbel(rng, logits.shape, jnp.float32)
    scores = logits + tau * g
    hard = hard_topk_mask(jax.lax.stop_gradient(scores), k)
    relaxed = relaxed_topk(scores, k, tau)
    return hard + relaxed - jax.lax.stop_gradient(relaxed)


def select(logits: np.ndarray | jax.Array, k: int) -> np.ndarray:
    """Inference selection: positions of the k largest logits, in ascending position order."""
    logits = np.asarray(logits)
    order = np.lexsort((np.arange(len(logits)), -logits))  # by logit desc, then position
    return np.sort(order[:k])


def tau_schedule(step: jax.Array, steps: int, tau_start: float, tau_end: float) -> jax.Array:
    """Exponential annealing from tau_start (step 0) to tau_end (step ``steps``) within a stage."""
    frac = jnp.clip(step / max(steps, 1), 0.0, 1.0)
    return tau_start * (tau_end / tau_start) ** frac
