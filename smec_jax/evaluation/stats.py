"""Paired bootstrap intervals over queries (and seeds), for differences people can trust."""

from __future__ import annotations

import numpy as np


def paired_bootstrap(
    a_sq: np.ndarray, b_sq: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Interval of mean(a) - mean(b) over the same queries.

    Args:
      a_sq, b_sq: (seeds, queries) per-query scores of two methods (a closed-form method
        has one row). Each replicate resamples the queries (paired: the same for both) and
        each method's seeds, independently.

    Returns:
      {"diff", "lo", "hi"}: the observed difference and the ``level`` percentile interval.
    """
    a, b = np.atleast_2d(a_sq), np.atleast_2d(b_sq)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{a.shape[1]} vs {b.shape[1]} queries: the scores are not paired")
    rng = np.random.default_rng(seed)
    n_q = a.shape[1]
    q = rng.integers(0, n_q, size=(n_boot, n_q))
    sa = rng.integers(0, len(a), size=(n_boot, len(a)))
    sb = rng.integers(0, len(b), size=(n_boot, len(b)))
    diffs = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # blocks of replicates: (256, queries) in memory
        i = slice(start, start + 256)
        diffs[i] = _replicate_means(a, sa[i], q[i]) - _replicate_means(b, sb[i], q[i])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return {"diff": float(a.mean() - b.mean()), "lo": float(lo), "hi": float(hi)}


def _replicate_means(x: np.ndarray, seeds: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``x[seeds[i]][:, q[i]].mean()`` for every replicate ``i``, without a Python loop:
    each replicate's seed draws as counts, summed per query by one matmul, then gathered at
    its query draws."""
    counts = (seeds[:, :, None] == np.arange(len(x))).sum(1)  # (replicates, seeds of x)
    per_query = counts @ x  # (replicates, queries): the drawn seeds' sum for each query
    return np.take_along_axis(per_query, q, 1).sum(1) / (seeds.shape[1] * q.shape[1])
