"""Chunked, sharded top-k equals a brute-force numpy argsort, ties and exclusions included."""

import jax.numpy as jnp
import numpy as np

from smec_jax import parallel
from smec_jax.core import retrieval


def brute_topk(q, c, k, exclude=None):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    s = q.astype(np.float64) @ c.T.astype(np.float64)
    if exclude is not None:
        for i, e in enumerate(exclude):
            if e >= 0:
                s[i, e] = -np.inf
    # best score first, ties by lower row (lexsort: last key is primary)
    order = np.stack([np.lexsort((np.arange(c.shape[0]), -row)) for row in s])[:, :k]
    return np.take_along_axis(s, order, 1), order


def test_chunked_equals_brute_force():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(37, 16)), rng.normal(size=(1003, 16))
    want_s, want_i = brute_topk(q, c, 50)
    got_s, got_i = retrieval.search(q, c, 50, chunk=128, query_batch=16)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_s, want_s, atol=1e-5)


def test_ties_break_by_lower_row_on_1_and_8_devices():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 8))
    c = base[rng.integers(0, 50, size=400)]  # many exact duplicates -> tied scores
    q = rng.normal(size=(9, 8))
    _, want = brute_topk(q, c, 40)
    mesh = parallel.data_mesh(8)
    for kwargs in ({"chunk": 32}, {"chunk": 16, "mesh": mesh}, {"chunk": 1000, "mesh": mesh}):
        _, got = retrieval.search(q, c, 40, **kwargs)
        np.testing.assert_array_equal(got, want, err_msg=str(kwargs))


def test_sharded_equals_single_device_and_excludes_self():
    rng = np.random.default_rng(2)
    q, c = rng.normal(size=(20, 24)), rng.normal(size=(777, 24))
    exclude = rng.integers(-1, 777, size=20)
    exclude[:5] = -1
    mesh = parallel.data_mesh(8)
    s1, i1 = retrieval.search(q, c, 30, exclude=exclude, chunk=64)
    s8, i8 = retrieval.search(q, c, 30, exclude=exclude, chunk=64, mesh=mesh)
    np.testing.assert_array_equal(i1, i8)
    np.testing.assert_allclose(s1, s8, atol=1e-6)
    assert not (i1 == exclude[:, None]).any()
    _, want = brute_topk(q, c, 30, exclude)
    np.testing.assert_array_equal(i1, want)


def test_k_larger_than_what_remains_fills_with_minus_one():
    c = np.eye(4, 6)
    s, i = retrieval.search(np.ones((2, 6)), c, 4, exclude=np.array([0, -1]))
    assert i.shape == (2, 4) and i[0, -1] == -1 and np.isneginf(s[0, -1])
    assert sorted(i[1]) == [0, 1, 2, 3]


def test_float16_corpus_stays_float16_and_ranks_like_brute_force():
    rng = np.random.default_rng(4)
    c = rng.normal(size=(500, 16)).astype(np.float16)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    c32 = c.astype(np.float32)
    unit16 = (c32 / np.linalg.norm(c32, axis=1, keepdims=True)).astype(np.float16)
    assert retrieval._normalize_keep_dtype(jnp.asarray(c)).dtype == jnp.float16
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    ref = np.sort(qn.astype(np.float64) @ unit16.astype(np.float64).T, axis=1)[:, ::-1][:, :20]
    scores, _ = retrieval.search(q, c, 20, chunk=64, mesh=parallel.data_mesh(8))
    np.testing.assert_allclose(scores, ref, atol=1e-6)  # the same top-20 scores, in order


def test_doc_bias_is_added_to_every_score():
    rng = np.random.default_rng(5)
    q, c = rng.normal(size=(6, 8)), rng.normal(size=(300, 8))
    bias = np.where(rng.random(300) < 0.1, 0.3, 0.0)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    s = qn @ cn.T + bias
    want = np.stack([np.lexsort((np.arange(300), -row)) for row in s])[:, :15]
    for mesh in (None, parallel.data_mesh(8)):
        got_s, got = retrieval.search(q, c, 15, doc_bias=bias, chunk=32, mesh=mesh)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got_s, np.take_along_axis(s, want, 1), atol=1e-5)


def test_trec_tie_order_ranks_ties_by_id_descending_on_1_and_8_devices():
    """With trec_eval's tie order, the top-k is the sort of every doc by (score desc, doc id
    desc), exclusions and a doc bias included, on 1 and 8 devices. (The scores are the
    search's own: XLA may round the norms of identical rows differently in the last bit, so
    a numpy recomputation is not the reference.)"""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(20, 8)).astype(np.float32)
    c = base[rng.integers(0, 20, size=300)]
    ids = [f"d{x}" for x in rng.choice(10**5, size=300, replace=False)]
    q = rng.normal(size=(17, 8)).astype(np.float32)
    exclude = rng.integers(-1, 300, size=17)
    bias = rng.integers(0, 2, size=300).astype(np.float32) * 0.5
    order = retrieval.trec_tie_order(ids)
    id_rank = np.empty(300, int)
    id_rank[order] = np.arange(300)  # 0 = the highest id
    n_ties = 0
    for mesh in (None, parallel.data_mesh(8)):
        kw = dict(exclude=exclude, doc_bias=bias, chunk=32, mesh=mesh, tie_order=order)
        got_s, got_i = retrieval.search(q, c, 40, **kw)
        all_s, all_i = retrieval.search(q, c, 300, **kw)
        for i in range(17):
            score = np.full(300, -np.inf, np.float32)
            ok = all_i[i] >= 0
            score[all_i[i][ok]] = all_s[i][ok]
            cand = np.flatnonzero(np.isfinite(score))
            want = cand[np.lexsort((id_rank[cand], -score[cand]))][:40]
            np.testing.assert_array_equal(got_i[i], want)
            assert exclude[i] not in got_i[i]
            n_ties += int(np.sum(got_s[i][1:] == got_s[i][:-1]))
    assert n_ties > 100  # the test is about ties: there are many


def test_packed_hamming_search_equals_float_search_on_pm1_vectors_on_1_and_8_devices():
    """XOR + popcount over packed bits scores and ranks exactly like the inner product of the
    +-1 vectors (37 bits: a partial last byte and word), sharded or not."""
    from smec_jax.core import codes

    rng = np.random.default_rng(6)
    y, q = (
        rng.normal(size=(700, 37)).astype(np.float32),
        rng.normal(size=(21, 37)).astype(np.float32),
    )
    cal = codes.calibrate(y, "binary")
    cy, cq = codes.encode(y, cal), codes.encode(q, cal)
    want_s, want_i = retrieval.search(codes.decode(cq, cal), codes.decode(cy, cal), 30, metric="ip")
    for mesh in (None, parallel.data_mesh(8)):
        s, i = retrieval.search(cq, cy, 30, metric="hamming", n_bits=37, chunk=64, mesh=mesh)
        np.testing.assert_array_equal(s, want_s)
        np.testing.assert_array_equal(i, want_i)


def test_int8_search_on_device_codes_equals_the_decoded_search():
    from smec_jax.core import codes

    rng = np.random.default_rng(7)
    y, q = (
        rng.normal(size=(900, 24)).astype(np.float32),
        rng.normal(size=(13, 24)).astype(np.float32),
    )
    cal = codes.calibrate(y, "int8")
    c = codes.encode(y, cal)
    s, i = retrieval.search_int8(q, c, cal.vmin, cal.vdiff, 25, chunk=128)
    want_s, want_i = retrieval.search(q, codes.decode(c, cal), 25, metric="ip", chunk=128)
    np.testing.assert_allclose(s, want_s, atol=1e-5)
    assert np.mean(i == want_i) > 0.98  # float reassociation may swap near-ties only
