"""Closed-form score-preserving compressors: keep query-document scores, not variance.

PCA keeps the directions in which *documents* vary most. What ranking needs is the
query-document score ``q . d``, which depends on where queries point too. With the query
second moment ``S_q = E[q q^T]`` (unlabelled training queries; their judgments are never
read) and the centred corpus covariance ``S_c`` (the corpus mean adds the same ``q . mu`` to
every document of a query, so it cannot change a ranking), the expected squared score error
of a rank-d map ``A`` is ``E (q^T (I - A)(d - mu))^2 = || S_q^(1/2) (I - A) S_c^(1/2) ||_F^2``.

* ``score_svd`` (asymmetric, exact): the Eckart-Young optimum. With the SVD
  ``S_q^(1/2) S_c^(1/2) = U S V^T``, queries map by ``G_q = S_q^(-1/2) U S^(1/2)`` and
  documents by ``G_d = S_c^(-1/2) V S^(1/2)``; the top-d singular triplets are optimal for
  every d at once, so every size is a prefix. The optimum is for raw inner products; the
  outputs are normalised (cosine) by default, which ranked better on validation queries.
* ``score_pca`` (symmetric, one orthonormal map for both sides): a :class:`PCA` compressor
  whose axes are those of the top eigenvalues of ``(S_q S_c + S_c S_q) / 2``, the
  first-order term of the symmetric problem (with ``S_q = S_c`` they are PCA's).

The queries are ``train.unlabelled_queries``: the training queries, or the pseudo-queries
made from the corpus (:mod:`smec_jax.datasets.pseudo_queries`), or both. Where the dataset has no
training queries (a corpus with test judgments only), the corpus' own uncentred second
moment stands in for ``S_q`` (documents as pseudo-queries), and the fit says so. The
estimate of ``S_q`` from a few hundred queries is shrunk towards that corpus moment by
``SHRINK``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from smec_jax.core.compressor import Compressor
from smec_jax.core.retrieval import l2_normalize
from smec_jax.datasets import pseudo_queries
from smec_jax.methods.closed_form import PCA
from smec_jax.methods.registry import Fitted, Method, register
from smec_jax.training import batches

SHRINK = 0.1  # weight of the corpus second moment in the query second moment
EPS = 1e-6  # relative eigenvalue floor of the inverse square roots


def _sym_power(s: np.ndarray, p: float) -> np.ndarray:
    """s^p of a symmetric PSD matrix, eigenvalues floored at EPS * max (pseudo-inverse-safe)."""
    w, v = np.linalg.eigh(s)
    w = np.maximum(w, EPS * max(w.max(), 1e-30))
    return (v * w**p) @ v.T


def training_queries(data, split: str = "train", source="train") -> tuple[np.ndarray, str]:
    """(query embeddings in float64, where they came from): the queries of ``split`` (their
    judgments are not read), or the corpus itself when the dataset has no such split; with
    ``source`` "pseudo" or "train+pseudo", the corpus's pseudo-queries (and those)."""
    q, source = batches.unlabelled_queries(data, None, split, source)
    return np.asarray(q, np.float64), source


def moments(
    data, split: str = "train", source="train"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(S_q, S_c, corpus mean, query source) in float64."""
    c = np.asarray(data.corpus, np.float64)
    mu = c.mean(axis=0)
    cc = c - mu
    s_c = cc.T @ cc / len(c)
    q, source = training_queries(data, split, source)
    s_q = (1 - SHRINK) * (q.T @ q / len(q)) + SHRINK * (c.T @ c / len(c))
    return s_q, s_c, mu, source


@dataclasses.dataclass(frozen=True)
class ScoreSVD(Compressor):
    """Asymmetric nested maps: queries ``q G_q``, documents ``(d - mu) G_d``.

    ``metric``: "cosine" (default; outputs normalised, chosen on SciFact validation queries:
    nDCG@10 0.574 / 0.492 / 0.352 at 128 / 64 / 32 against 0.562 / 0.491 / 0.312 for "ip")
    or "ip", the raw inner products the fit is optimal for.
    """

    q_map: jax.Array  # (D, D)
    d_map: jax.Array  # (D, D)
    mean: jax.Array  # (D,)
    metric: str = "cosine"

    def project(self, x: jax.Array, dim: int) -> jax.Array:
        return (jnp.asarray(x, jnp.float32) - self.mean) @ self.d_map[:, :dim]

    def project_queries(self, x: jax.Array, dim: int) -> jax.Array:
        return jnp.asarray(x, jnp.float32) @ self.q_map[:, :dim]

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        y = self.project(x, dim)
        return l2_normalize(y) if self.metric == "cosine" else y

    def compress_queries(self, x: jax.Array, dim: int) -> jax.Array:
        y = self.project_queries(x, dim)
        return l2_normalize(y) if self.metric == "cosine" else y


def fit_score_svd(data, split: str = "train", source="train") -> tuple[ScoreSVD, str]:
    s_q, s_c, mu, source = moments(data, split, source)
    rq, rc = _sym_power(s_q, 0.5), _sym_power(s_c, 0.5)
    u, s, vt = np.linalg.svd(rq @ rc)
    root = np.sqrt(s)
    q_map = _sym_power(s_q, -0.5) @ u * root
    d_map = _sym_power(s_c, -0.5) @ vt.T * root
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return ScoreSVD(f32(q_map), f32(d_map), f32(mu)), source


def fit_score_pca(data, split: str = "train", source="train") -> tuple[PCA, str]:
    s_q, s_c, mu, source = moments(data, split, source)
    m = s_q @ s_c
    w, v = np.linalg.eigh((m + m.T) / 2)
    order = np.argsort(-w)
    return PCA(jnp.asarray(mu, jnp.float32), jnp.asarray(v[:, order], jnp.float32)), source


def _fitter(fit):
    def fitted(cfg, data, workdir=None, *, verbose: bool = True, **_) -> Fitted:
        del workdir
        data = pseudo_queries.attach_for(cfg, data)
        comp, source = fit(data, cfg.train.split, cfg.train.unlabelled_queries)
        if verbose:
            print(f"{cfg.method}: query second moment from {source}", flush=True)
        return Fitted(comp)

    return fitted


register(
    Method(
        "score_pca",
        "label_free",
        False,
        _fitter(fit_score_pca),
        doc="one map keeping query-document scores (training queries, no judgments)",
    )
)
register(
    Method(
        "score_svd",
        "label_free",
        False,
        _fitter(fit_score_svd),
        doc="query map + document map, the rank-d optimum of the score error (no judgments)",
    )
)
