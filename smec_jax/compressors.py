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
import numpy as np

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


# --------------------------------------------------------------------------- doc_prior control


@dataclasses.dataclass(frozen=True)
class DocPrior:
    """A control, not a compressor: the original embedding at every size, plus a score bonus
    ``beta`` for every document judged relevant for a training query. What it gains over
    ``truncate`` at full size is what remembering training documents alone is worth.

    Attributes:
      bias: (n_docs,) bonus per corpus row. beta: the validated bonus.
    """

    bias: np.ndarray
    beta: float

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        del dim  # no compression: the point is to measure memorisation alone
        return l2_normalize(jnp.asarray(x, jnp.float32))

    def doc_bias(self) -> np.ndarray:
        return self.bias


DOC_PRIOR_BETAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)


def _judged_bias(data: RetrievalData, split: str, qids: Sequence[str]) -> np.ndarray:
    row = {d: i for i, d in enumerate(data.corpus_ids)}
    qrels = data.qrels_for(split)
    marked = np.zeros((len(data.corpus_ids),), np.float32)
    for q in qids:
        for d, g in qrels[q].items():
            if g > 0:
                marked[row[d]] = 1.0
    return marked


@register("doc_prior")
def fit_doc_prior(data: RetrievalData, ladder: Sequence[int], config: Any = None) -> DocPrior:
    """Chooses beta on a *random* validation split of the training queries (remembering only
    helps queries that share documents with training, so an unseen-style split would always
    choose 0), then marks the documents judged relevant for all training queries."""
    from smec_jax import evaluation, input_pipeline

    del ladder
    split = config.train.split if config is not None else "train"
    frac = config.train.val_fraction if config is not None else 0.15
    seed = config.seed if config is not None else 0
    train_q, val_q = input_pipeline.split_train_val(data, split, frac, seed, unseen=False)
    marked = _judged_bias(data, split, train_q)
    qrels = data.qrels_for(split)
    scores = {}
    for beta in DOC_PRIOR_BETAS:
        comp = DocPrior(bias=beta * marked, beta=beta)
        scores[beta] = float(evaluation.score(data, comp, data.dim, val_q, qrels)["ndcg@10"].mean())
    beta = max(DOC_PRIOR_BETAS, key=lambda b: (scores[b], -b))
    return DocPrior(bias=beta * _judged_bias(data, split, data.judged_queries(split)), beta=beta)
