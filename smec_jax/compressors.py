"""One interface for every compression method, and the two label-free baselines.

A method is a ``fit`` function ``(data, ladder, config) -> Compressor``; the compressor maps
original embeddings to any ladder size with ``compress(x, dim)`` (L2-normalised output), so
one evaluation code path scores every method at every size. Later methods (SMEC, the
adaptors, the ablations) register themselves in :data:`METHODS` the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from smec_jax.data import RetrievalData
from smec_jax.retrieval import l2_normalize


class Compressor(Protocol):
    """A fitted compressor: original (n, D) embeddings -> (n, dim) unit vectors."""

    def compress(self, x: jax.Array, dim: int) -> jax.Array: ...


FitFn = Callable[[RetrievalData, Sequence[int], Any], Compressor]
METHODS: dict[str, FitFn] = {}


def register(name: str) -> Callable[[FitFn], FitFn]:
    def deco(fn: FitFn) -> FitFn:
        METHODS[name] = fn
        return fn

    return deco


def fit_method(name: str, data: RetrievalData, ladder: Sequence[int], config: Any) -> Compressor:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name](data, ladder, config)


# --------------------------------------------------------------------------- truncation


@dataclasses.dataclass(frozen=True)
class Truncate:
    """Keep the first ``dim`` coordinates of the original embedding."""

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        return l2_normalize(jnp.asarray(x, jnp.float32)[:, :dim])


@register("truncate")
def fit_truncate(data: RetrievalData, ladder: Sequence[int], config: Any = None) -> Truncate:
    del data, ladder, config
    return Truncate()


# --------------------------------------------------------------------------- PCA


@dataclasses.dataclass(frozen=True)
class PCA:
    """Project the centred embedding on the top principal axes of the corpus.

    Attributes:
      mean: (D,) corpus mean. components: (D, D) principal axes as columns, by variance.
    """

    mean: jax.Array
    components: jax.Array

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        x = jnp.asarray(x, jnp.float32) - self.mean
        return l2_normalize(x @ self.components[:, :dim])


@jax.jit
def _pca_axes(x_nd: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = x_nd.mean(axis=0)
    xc = x_nd - mean
    cov = (xc.T @ xc) / x_nd.shape[0]
    evals, evecs = jnp.linalg.eigh(cov)  # ascending
    order = jnp.argsort(-evals)
    return mean, evecs[:, order]


@register("pca")
def fit_pca(data: RetrievalData, ladder: Sequence[int], config: Any = None) -> PCA:
    """Fits PCA on the corpus embeddings (no labels, no queries)."""
    del ladder, config
    mean, axes = _pca_axes(jnp.asarray(data.corpus, jnp.float32))
    return PCA(mean=mean, components=axes)
