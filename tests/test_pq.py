"""The learned product quantizer (smec_jax/methods/pq.py):

* faiss serves it: the exported ``IndexPreTransform(LinearTransform, IndexPQ)`` holds the
  codes this module computes and its search returns the scores and top-k of a brute-force
  asymmetric scoring of those codes;
* the codes are each sub-vector's nearest centroid (brute force), and the initialisation is
  faiss's OPQ + PQ (its codes reproduce faiss's own index of the same factory);
* training moves it: the distillation loss on held-out queries falls below the
  initialisation's.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from smec_jax.methods import pq
from smec_jax.training import batches


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def fitted(synthetic):
    data = synthetic
    comp, init = pq.fit(
        data, data.corpus, (8, 4), dim=16, steps=60, lr=1e-3, batch=16, top=8, n_random=64,
        temperature=0.05, assign_temperature=1.0, opq_iterations=5, seed=0,
        self_rows=np.arange(len(data.corpus)), verbose=False,
    )  # fmt: skip
    return data, comp, init


def test_codes_are_each_sub_vectors_nearest_centroid(fitted):
    data, comp, _ = fitted
    for m in (8, 4):
        z = unit(data.corpus) @ comp.transforms[m]
        c = comp.centroids[m]
        sub = z.reshape(len(z), m, -1)
        dist = ((sub[:, :, None, :] - c[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(comp.encode(data.corpus, m), dist.argmin(-1))
        assert comp.bytes_per_vector(m) == m and comp.encode(data.corpus, m).dtype == np.uint8
    with pytest.raises(ValueError, match="holds budgets"):
        comp.compress(data.corpus, 5)


def test_faiss_searches_the_exported_index_as_we_score_its_codes(fitted):
    data, comp, _ = fitted
    q = unit(data.queries[:30])
    for m in (8, 4):
        index = pq.to_faiss(comp, m, data.corpus)
        assert index.ntotal == len(data.corpus) and index.sa_code_size() == m
        np.testing.assert_array_equal(
            index.sa_encode(unit(data.corpus)), comp.encode(data.corpus, m)
        )
        scores, rows = index.search(q, 10)
        s = np.asarray(comp.compress_queries(q, m)) @ np.asarray(comp.compress(data.corpus, m)).T
        want = np.sort(s, axis=1)[:, ::-1][:, :10]
        np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-5)
        # faiss's rows hold those scores (an exact tie may order differently)
        np.testing.assert_allclose(np.take_along_axis(s, rows, 1), want, rtol=1e-4, atol=1e-5)


def test_the_initialisation_is_faiss_opq_and_pq(synthetic):
    """With no projection and no training, the codes are those of faiss's own OPQ + PQ index
    trained on the same vectors."""
    from smec_jax.serving import faiss_index

    faiss = faiss_index.faiss_module()
    x = unit(synthetic.corpus).astype(np.float32)
    w, c = pq.opq_init(x, 8, 0, 5, 0)
    init = pq.LearnedPQ({8: w}, {8: c})
    opq = faiss.OPQMatrix(x.shape[1], 8)
    opq.niter = 5
    opq.verbose = False
    pqi = faiss.IndexPQ(x.shape[1], 8, 8, faiss.METRIC_INNER_PRODUCT)
    pqi.pq.cp.seed = 0
    ref = faiss.IndexPreTransform(opq, pqi)
    ref.train(x)
    np.testing.assert_array_equal(ref.sa_encode(x), init.encode(x, 8))


def test_training_lowers_the_distillation_loss_on_held_out_queries(fitted):
    data, comp, init = fitted
    ds = batches.distill_batches(
        data, data.queries, batch=32, top=8, n_random=64, seed=5
    )  # queries training never read: the training ran on the documents
    for m in (8, 4):
        losses = {}
        for name, c in (("init", init), ("trained", comp)):
            params = {"w": jnp.asarray(c.transforms[m]), "c": jnp.asarray(c.centroids[m])}
            losses[name] = np.mean(
                [float(pq._loss(params, {k: jnp.asarray(v) for k, v in ds[i].items()}, 1.0, 0.05)) for i in range(4)]
            )  # fmt: skip
        assert losses["trained"] < losses["init"], (m, losses)


def test_the_api_fits_saves_loads_and_serves_a_learned_quantizer(tmp_path):
    """``smec_jax.fit(docs, method="distill_pq_docs", sizes=bytes)``: codes of the requested
    bytes, the same after save and load, and a faiss index with the given ids whose search
    equals the brute-force scores of the decoded codes."""
    import smec_jax

    rng = np.random.default_rng(0)
    docs = (rng.normal(size=(500, 8)) @ rng.normal(size=(8, 32))).astype(np.float32)
    comp = smec_jax.fit(
        docs, sizes=(8,), method="distill_pq_docs", verbose=False,
        overrides={"pq.steps": 20, "pq.opq_iterations": 2, "train.distill_batch": 16},
    )  # fmt: skip
    assert comp.sizes == (8,)
    c8 = comp.encode_documents(docs, 8)
    assert c8.shape == (500, 8) and c8.dtype == np.uint8
    loaded = smec_jax.load(comp.save(tmp_path / "pq"))
    np.testing.assert_array_equal(loaded.encode_documents(docs, 8), c8)
    ids = np.arange(500) * 3 + 1
    index = loaded.to_faiss(docs, 8, ids=ids)
    q = loaded.encode_queries(docs[:20], 8)
    scores, got = index.search(unit(docs[:20]), 5)
    s = q @ loaded.decode_documents(c8, 8).T
    want = np.sort(s, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-5)
    rows = (got - 1) // 3
    np.testing.assert_allclose(np.take_along_axis(s, rows, 1), want, rtol=1e-4, atol=1e-5)
