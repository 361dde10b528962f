"""A small deterministic retrieval dataset generated in memory, for runs without real data.

Documents are clustered points in a low-rank latent space, mapped into ``dim`` dimensions by
a random orthonormal basis, plus isotropic noise. A query is a noisy copy of a target
document's latent point; the target is judged 2, its nearest latent neighbours 1. Train and
test queries share the corpus, as in BEIR. Structure lives in a subspace spread over all
coordinates, so prefix truncation loses more than PCA, as with real encoders; and
``n_nuisance`` high-variance latent directions carry no relevance (drawn afresh for every
text), so the directions PCA keeps first are not the ones retrieval needs: a compressor that
learns from judgments can beat PCA at small sizes. Pseudo-queries (one per document, as a
document's title would be) are noisy copies of each document's latent point, drawn from
their own random stream so that the rest of the dataset does not depend on them.
"""

from __future__ import annotations

import numpy as np

from smec_jax.datasets.data import RetrievalData


def make_synthetic(
    *,
    n_docs: int = 2000,
    n_train: int = 400,
    n_test: int = 100,
    dim: int = 64,
    rank: int = 16,
    n_clusters: int = 40,
    noise: float = 0.15,
    query_noise: float = 0.5,
    n_related: int = 2,
    n_nuisance: int = 4,
    nuisance_scale: float = 1.5,
    seed: int = 0,
) -> RetrievalData:
    """Generates the dataset; the same arguments always give the same arrays."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, rank + n_nuisance)))
    centers = rng.normal(size=(n_clusters, rank)) * 2.0
    cluster = rng.integers(0, n_clusters, size=n_docs)
    doc_lat = centers[cluster] + rng.normal(size=(n_docs, rank))
    n_q = n_train + n_test
    target = rng.choice(n_docs, size=n_q, replace=n_q > n_docs)
    q_lat = doc_lat[target] + query_noise * rng.normal(size=(n_q, rank))

    def embed(lat: np.ndarray, r: np.random.Generator = rng) -> np.ndarray:
        nuisance = nuisance_scale * r.normal(size=(len(lat), n_nuisance))
        x = np.concatenate([lat, nuisance], axis=1) @ basis.T + noise * np.sqrt(
            rank / dim
        ) * r.normal(size=(len(lat), dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    corpus, queries = embed(doc_lat), embed(q_lat)
    doc_ids = [f"d{i}" for i in range(n_docs)]
    query_ids = [f"q{i}" for i in range(n_q)]
    qrels: dict[str, dict[str, dict[str, int]]] = {"train": {}, "test": {}}
    for i, t in enumerate(target):
        same = np.flatnonzero(cluster == cluster[t])
        same = same[same != t]
        dist = np.linalg.norm(doc_lat[same] - doc_lat[t], axis=1)
        rels = {doc_ids[t]: 2} | {doc_ids[j]: 1 for j in same[np.argsort(dist)[:n_related]]}
        qrels["train" if i < n_train else "test"][query_ids[i]] = rels
    pseudo_rng = np.random.default_rng([seed, 1])
    pseudo = embed(doc_lat + query_noise * pseudo_rng.normal(size=doc_lat.shape), pseudo_rng)
    return RetrievalData(
        name="synthetic",
        encoder=f"synthetic-{dim}d",
        corpus_ids=doc_ids,
        corpus=corpus,
        query_ids=query_ids,
        queries=queries,
        qrels=qrels,
        pseudo_queries=pseudo,
        pseudo_source=f"{n_docs} synthetic pseudo-queries (one per document)",
        pseudo_doc_rows=np.arange(n_docs),
    )
