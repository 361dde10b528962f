"""The free alternatives: prefix truncation and PCA, fitted in closed form (no labels)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from smec_jax.core.compressor import Compressor
from smec_jax.core.retrieval import l2_normalize
from smec_jax.methods.registry import Fitted, Method, register


@dataclasses.dataclass(frozen=True)
class Truncate(Compressor):
    """Keep the first ``dim`` coordinates of the original embedding."""

    nests = True

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        return l2_normalize(jnp.asarray(x, jnp.float32)[:, :dim])

    def as_nested(self, sizes):
        """The identity map of ``max(sizes)``-d embeddings (the original dimension) at
        ``sizes``: truncation, exportable like a trained compressor."""
        from smec_jax.core.export import original

        full = original(max(sizes))
        return dataclasses.replace(full, sizes=tuple(int(s) for s in sizes))


@dataclasses.dataclass(frozen=True)
class PCA(Compressor):
    """Project the centred embedding on the top principal axes of the corpus.

    Attributes:
      mean: (D,) corpus mean. components: (D, D) principal axes as columns, by variance.
    """

    mean: jax.Array
    components: jax.Array
    nests = True

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        x = jnp.asarray(x, jnp.float32) - self.mean
        return l2_normalize(x @ self.components[:, :dim])

    def as_nested(self, sizes):
        """The same projection as a nested linear map (y = x W + b, every size a prefix),
        exportable like a trained compressor (equal up to float rounding)."""
        from smec_jax.core.export import NestedCompressor

        w = np.asarray(self.components, np.float32)
        b = -(np.asarray(self.mean, np.float32) @ w)
        return NestedCompressor(
            {"w": w, "b": b}, np.arange(w.shape[1]), tuple(int(s) for s in sizes)
        )


@jax.jit
def _pca_axes(x_nd: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = x_nd.mean(axis=0)
    xc = x_nd - mean
    cov = (xc.T @ xc) / x_nd.shape[0]
    evals, evecs = jnp.linalg.eigh(cov)  # ascending
    order = jnp.argsort(-evals)
    return mean, evecs[:, order]


def fit_pca_corpus(corpus_nd) -> PCA:
    """PCA of the corpus embeddings (no labels, no queries)."""
    mean, axes = _pca_axes(jnp.asarray(corpus_nd, jnp.float32))
    return PCA(mean=mean, components=axes)


def _fit_truncate(cfg, data, workdir=None, **_) -> Fitted:
    del cfg, data, workdir
    return Fitted(Truncate())


def _fit_pca(cfg, data, workdir=None, **_) -> Fitted:
    del cfg, workdir
    return Fitted(fit_pca_corpus(data.corpus))


register(Method("truncate", "baseline", False, _fit_truncate, doc="first d original dims"))
register(Method("pca", "baseline", False, _fit_pca, doc="top-d principal axes of the corpus"))
