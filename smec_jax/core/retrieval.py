"""Exact (exhaustive) cosine top-k retrieval in JAX, chunked and sharded over a device mesh.

The corpus is split into ``chunk``-row blocks; a ``lax.scan`` keeps a running top-k, so
memory is O(queries x (k + chunk)) whatever the corpus size. With a mesh, the corpus is
sharded along the mesh's data axis: each device finds its local top-k, then the (tiny)
candidate lists are all-gathered and merged. Ties break by the lower corpus row on every
device count, because ``lax.top_k`` is stable and candidates are kept in row order.

``tie_order`` changes which row wins a tie: the corpus is searched in that row order, so
with :func:`trec_tie_order` (document ids, descending, as trec_eval's ``comp_sim_docno``
sorts them) the top-k are exactly the k docs that trec_eval, pytrec_eval, BEIR and MTEB
would rank first, in their order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

NEG_INF = -jnp.inf


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(|x|, eps) along the last axis, with a finite gradient at x = 0 (memory padding)."""
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _scores(q_qd, block, n_bits: int):
    """(Q, chunk) scores: inner products, or for packed binary codes (``n_bits`` > 0, uint32
    words) ``n_bits - 2 * hamming`` by XOR and popcount (the +-1 inner product)."""
    if n_bits:
        x = jnp.bitwise_xor(q_qd[:, None, :], block[None, :, :])
        ham = jax.lax.population_count(x).astype(jnp.int32).sum(axis=-1)
        return (n_bits - 2 * ham).astype(jnp.float32)
    return jnp.dot(q_qd, block.astype(jnp.float32).T, preferred_element_type=jnp.float32)


def _local_topk(
    q_qd, c_nd, bias_n, exclude_q, offset, n_valid, *, k: int, chunk: int, n_bits: int = 0
):
    """Running top-k of q @ c.T (or the Hamming score) over ``chunk``-row blocks of a
    (local) corpus block.

    Args:
      q_qd: (Q, D) queries. c_nd: (n, D) corpus rows, n a multiple of ``chunk``.
      bias_n: (n,) score added to each corpus row (zeros: plain cosine).
      exclude_q: (Q,) global corpus row to drop per query (-1: none).
      offset: global row of c_nd[0]. n_valid: number of real (unpadded) corpus rows.

    Returns:
      (Q, k) scores and (Q, k) global rows, best first; -inf / -1 where fewer than k exist.
    """
    n_q, dim = q_qd.shape
    blocks = c_nd.reshape(-1, chunk, dim)
    biases = bias_n.reshape(-1, chunk)

    def body(carry, inp):
        best_s, best_i = carry
        block, bias, j = inp
        s = _scores(q_qd, block, n_bits) + bias
        rows = offset + j * chunk + jnp.arange(chunk)
        drop = (rows[None, :] >= n_valid) | (rows[None, :] == exclude_q[:, None])
        s = jnp.where(drop, NEG_INF, s)
        cat_s = jnp.concatenate([best_s, s], axis=1)
        cat_i = jnp.concatenate([best_i, jnp.broadcast_to(rows, (n_q, chunk))], axis=1)
        top_s, pos = jax.lax.top_k(cat_s, k)
        return (top_s, jnp.take_along_axis(cat_i, pos, axis=1)), None

    init = (jnp.full((n_q, k), NEG_INF, jnp.float32), jnp.full((n_q, k), -1, jnp.int32))
    (best_s, best_i), _ = jax.lax.scan(body, init, (blocks, biases, jnp.arange(blocks.shape[0])))
    return best_s, jnp.where(jnp.isfinite(best_s), best_i, -1)


@functools.partial(jax.jit, static_argnames=("k", "chunk", "n_bits"))
def _topk_single(q_qd, c_nd, bias_n, exclude_q, n_valid, *, k, chunk, n_bits=0):
    return _local_topk(q_qd, c_nd, bias_n, exclude_q, 0, n_valid, k=k, chunk=chunk, n_bits=n_bits)


@functools.lru_cache(maxsize=32)
def _topk_sharded_fn(mesh: Mesh, axis: str, k: int, chunk: int, n_bits: int = 0):
    def per_shard(q_qd, c_nd, bias_n, exclude_q, n_valid):
        offset = jax.lax.axis_index(axis) * c_nd.shape[0]
        s, i = _local_topk(
            q_qd, c_nd, bias_n, exclude_q, offset, n_valid, k=k, chunk=chunk, n_bits=n_bits
        )
        # (shards, Q, k) in shard order == row order, so the stable merge keeps lower rows.
        all_s = jax.lax.all_gather(s, axis, axis=1, tiled=True)
        all_i = jax.lax.all_gather(i, axis, axis=1, tiled=True)
        top_s, pos = jax.lax.top_k(all_s, k)
        return top_s, jnp.take_along_axis(all_i, pos, axis=1)

    fn = jax.shard_map(
        per_shard,
        mesh=mesh,
        in_specs=(P(), P(axis), P(axis), P(), P()),
        out_specs=(P(), P()),
        check_vma=False,
    )
    return jax.jit(fn)


def prepare_corpus(corpus: np.ndarray | jax.Array, chunk: int, mesh: Mesh | None, axis="data"):
    """Pads the corpus to whole chunks per shard and places it (sharded) on the device(s)."""
    n, _ = corpus.shape
    shards = mesh.shape[axis] if mesh is not None else 1
    chunk = max(1, min(chunk, -(-n // shards)))
    per = -(-n // (shards * chunk)) * chunk
    padded = jnp.pad(jnp.asarray(corpus), ((0, per * shards - n), (0, 0)))
    if mesh is not None:
        padded = jax.device_put(padded, NamedSharding(mesh, P(axis)))
    return padded, chunk


def search(
    queries: np.ndarray | jax.Array,
    corpus: np.ndarray | jax.Array,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    doc_bias: np.ndarray | None = None,
    chunk: int = 4096,
    query_batch: int = 1024,
    mesh: Mesh | None = None,
    axis: str = "data",
    tie_order: np.ndarray | None = None,
    metric: str = "cosine",
    n_bits: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of every query over the whole corpus.

    ``metric``: "cosine" (rows L2-normalised here), "ip" (inner product as given, e.g.
    decoded int8 codes as a faiss index scores them) or "hamming": packed binary codes
    (uint8 rows of ceil(n_bits / 8) bytes, as :mod:`smec_jax.core.codes` packs them), scored
    ``n_bits - 2 * hamming`` by XOR and popcount on the device.

    Args:
      queries: (Q, D); corpus: (N, D). Both are L2-normalised here (cosine); a float16 or
        bfloat16 device corpus stays in that dtype and is upcast one chunk at a time.
      k: hits per query (clipped to N).
      exclude: optional (Q,) corpus row to drop per query (-1 = none), e.g. the doc whose id
        equals the query id in ArguAna-style corpora.
      doc_bias: optional (N,) score added to every query's cosine with each doc.
      chunk: corpus rows scored at once per device (bounds memory).
      query_batch: queries scored at once.
      mesh: shard the corpus along ``axis`` of this mesh; None = default device.
      tie_order: optional (N,) permutation of the corpus rows; among equal scores the row
        that comes first in it wins (default: the lower row). See :func:`trec_tie_order`.

    Returns:
      scores (Q, k) float32 and rows (Q, k) int32 (rows of the corpus as given), best
      first; -inf / -1 fill slots when fewer than k docs remain.
    """
    if tie_order is not None:
        return _search_in_order(
            queries,
            corpus,
            k,
            tie_order,
            exclude=exclude,
            doc_bias=doc_bias,
            chunk=chunk,
            query_batch=query_batch,
            mesh=mesh,
            axis=axis,
            metric=metric,
            n_bits=n_bits,
        )
    if metric not in ("cosine", "ip", "hamming"):
        raise ValueError(f"unknown metric {metric!r}; use cosine, ip or hamming")
    n_docs = corpus.shape[0]
    k = min(k, n_docs)
    if metric == "hamming":
        corpus, queries = _words(corpus), _words(queries)
        if not n_bits:
            raise ValueError("metric hamming needs n_bits (the code size)")
    elif metric == "cosine":
        corpus = _normalize_keep_dtype(jnp.asarray(corpus))
    else:
        corpus = jnp.asarray(corpus)
    corpus_p, chunk = prepare_corpus(corpus, chunk, mesh, axis)
    bias = np.zeros((n_docs,), np.float32) if doc_bias is None else np.asarray(doc_bias, np.float32)
    bias_p = jnp.pad(jnp.asarray(bias), (0, corpus_p.shape[0] - n_docs))
    if mesh is not None:
        bias_p = jax.device_put(bias_p, NamedSharding(mesh, P(axis)))
    if metric != "hamming":
        queries = jnp.asarray(queries, jnp.float32)
        queries = l2_normalize(queries) if metric == "cosine" else queries
    bits = n_bits if metric == "hamming" else 0
    n_q = queries.shape[0]
    exclude = np.full((n_q,), -1, np.int32) if exclude is None else np.asarray(exclude, np.int32)
    n_valid = jnp.int32(n_docs)
    if mesh is None:
        fn = functools.partial(_topk_single, k=k, chunk=chunk, n_bits=bits)
    else:
        fn = _topk_sharded_fn(mesh, axis, k, chunk, bits)
    scores, rows = [], []
    for start in range(0, n_q, query_batch):
        qb = queries[start : start + query_batch]
        eb = jnp.asarray(exclude[start : start + query_batch])
        pad = query_batch - qb.shape[0] if n_q > query_batch else 0
        if pad:  # keep one compiled shape for the last, short batch
            qb = jnp.pad(qb, ((0, pad), (0, 0)))
            eb = jnp.pad(eb, (0, pad), constant_values=-1)
        s, i = fn(qb, corpus_p, bias_p, eb, n_valid)
        scores.append(np.asarray(s)[: qb.shape[0] - pad])
        rows.append(np.asarray(i)[: qb.shape[0] - pad])
    return np.concatenate(scores), np.concatenate(rows)


def _search_in_order(queries, corpus, k, order, *, exclude, doc_bias, **kwargs):
    """:func:`search` over the corpus permuted by ``order``, rows mapped back."""
    order = np.asarray(order, np.int64)
    n_docs = corpus.shape[0]
    if order.shape != (n_docs,):
        raise ValueError(f"tie_order has shape {order.shape}; expected ({n_docs},)")
    inv = np.empty_like(order)
    inv[order] = np.arange(n_docs)
    if exclude is not None:
        exclude = np.asarray(exclude)
        exclude = np.where(exclude >= 0, inv[np.maximum(exclude, 0)], -1)
    bias = None if doc_bias is None else np.asarray(doc_bias, np.float32)[order]
    scores, rows = search(
        queries, jnp.asarray(corpus)[order], k, exclude=exclude, doc_bias=bias, **kwargs
    )
    return scores, np.where(rows >= 0, order[np.maximum(rows, 0)], -1).astype(np.int32)


def search_int8(queries, codes_nd, vmin, vdiff, k: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric top-k of float queries against int8 codes (faiss's QT_8bit layout, see
    :mod:`smec_jax.core.codes`) kept as uint8 on the device: q . decode(c) = q' . c + b(q) with
    q' = q * vdiff / 255 and b(q) = q . (vmin + 0.5 vdiff / 255), so the codes are never
    decoded in memory (a quarter of float32's bytes), and the scores are exact inner
    products with the reconstructions."""
    q = np.asarray(queries, np.float32)
    vmin, vdiff = np.asarray(vmin, np.float32), np.asarray(vdiff, np.float32)
    qs = q * (vdiff / np.float32(255.0))
    offset = q @ (vmin + np.float32(0.5) * vdiff / np.float32(255.0))
    scores, rows = search(qs, jnp.asarray(codes_nd, jnp.uint8), k, metric="ip", **kwargs)
    return scores + offset[:, None].astype(np.float32), rows


def _words(packed) -> jax.Array:
    """uint8 packed codes (n, B) as uint32 words (n, ceil(B / 4)), zero-padded: XOR and
    popcount on words count the same bits."""
    x = np.asarray(packed, np.uint8)
    pad = -x.shape[1] % 4
    if pad:
        x = np.pad(x, ((0, 0), (0, pad)))
    return jnp.asarray(np.ascontiguousarray(x).view(np.uint32))


def trec_tie_order(doc_ids: list[str]) -> np.ndarray:
    """Rows by document id, descending (byte-wise, as trec_eval's strcmp): the order in which
    trec_eval breaks score ties."""
    return np.asarray(sorted(range(len(doc_ids)), key=doc_ids.__getitem__, reverse=True))


def tie_ranks(order: np.ndarray) -> np.ndarray:
    """Each row's place in the tie order ``order`` (a permutation of the rows, e.g.
    :func:`trec_tie_order`'s): lower wins a tie."""
    ranks = np.empty(len(order), np.int64)
    ranks[np.asarray(order)] = np.arange(len(order))
    return ranks


@jax.jit
def _normalize_keep_dtype(c_nd: jax.Array) -> jax.Array:
    """Unit rows, computed in float32; float16/bfloat16 corpora stay compact (upcast per chunk
    during the search), anything else becomes float32. Row-wise, so identical rows stay
    identical (ties then break by row on any chunking or device count)."""
    out = l2_normalize(c_nd.astype(jnp.float32))
    return out.astype(c_nd.dtype) if c_nd.dtype in (jnp.float16, jnp.bfloat16) else out


def self_exclusion(query_ids: list[str], doc_ids: list[str]) -> np.ndarray:
    """(Q,) corpus row whose id equals each query's id, else -1 (ArguAna-style corpora)."""
    row = {d: i for i, d in enumerate(doc_ids)}
    return np.asarray([row.get(q, -1) for q in query_ids], dtype=np.int32)
