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
    for i in range(n_boot):
        diffs[i] = a[sa[i]][:, q[i]].mean() - b[sb[i]][:, q[i]].mean()
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return {"diff": float(a.mean() - b.mean()), "lo": float(lo), "hi": float(hi)}
