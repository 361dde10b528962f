"""A learned product quantizer: faiss's PQ codes, trained by listwise distillation.

At a few bytes per document, product quantization (PQ) is what faiss and every vector store
offer: an input transform ``z = x W`` (here an optional PCA projection to ``pq.dim`` dims,
then OPQ's rotation), split into ``m`` sub-vectors, each stored as the index of its nearest
of 256 centroids (one byte each: ``m`` bytes per document). A float query is scored
against the codes by asymmetric distance: ``(q W) . decode(code(x W))``.

Here ``W`` and the centroids start as faiss's own OPQ + PQ on the corpus, then are trained
in JAX by the listwise distillation of the full-size ranking that the label-free methods use
(:func:`smec_jax.training.objective.listwise_kl`) on unlabelled queries (pseudo-queries, or
the documents themselves), no judgment read: the forward pass assigns each sub-vector to
its nearest centroid (hard), the gradient flows through a soft assignment (softmax over the
negative squared distances, at a temperature of the initial quantization error: straight-
through). The documents are re-assigned to the trained centroids when coded.

Each byte budget (``pq.bytes``) is its own quantizer (transform and codebooks): the 16 B
code is not a prefix of the 32 B one. What this gives up: no funnel from a shorter code of
the same index.

:func:`to_faiss` writes a quantizer as a faiss index that faiss itself searches
(``IndexPreTransform(LinearTransform(W), IndexPQ)``, the trained centroids in its
``ProductQuantizer``): faiss's codes and scores are this module's.

Registered: ``distill_pq`` (pseudo-queries from the corpus's texts) and ``distill_pq_docs``
(the documents as queries: no texts, no encoder).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from smec_jax import files
from smec_jax.core.compressor import Compressor
from smec_jax.core.retrieval import l2_normalize
from smec_jax.datasets import pseudo_queries
from smec_jax.methods.registry import Fitted, Method, apply_overrides, register
from smec_jax.progress import eta
from smec_jax.training import batches, checks, objective

log = logging.getLogger(__name__)

KSUB = 256  # centroids per sub-quantizer: 8 bits, one byte per sub-vector
NAMES = ("distill_pq", "distill_pq_docs")  # registered below


def config_block() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.bytes = (16, 32)  # budgets: sub-quantizers m (bytes per document), one quantizer each
    c.dim = 128  # dims before quantizing: the corpus's top principal axes; 0 = all D
    c.steps = 1500  # distillation steps per budget
    c.lr = 1e-3
    c.opq_iterations = 20  # faiss OPQ's iterations for the initial rotation
    # the soft assignment's temperature, times the initial mean squared sub-vector error
    c.assign_temperature = 1.0
    return c


def _budgets(v):
    ok = isinstance(v, tuple | list) and v and all(isinstance(b, int) and b >= 1 for b in v)
    return None if ok else f"must be a tuple of positive byte counts, got {v!r}"


checks.declare_block(
    "pq",
    config_block,
    {
        "pq.bytes": _budgets,
        "pq.dim": checks.integer(0),
        "pq.steps": checks.integer(1),
        "pq.lr": checks.real(0.0, strict=True),
        "pq.opq_iterations": checks.integer(0),
        "pq.assign_temperature": checks.real(0.0, strict=True),
    },
)


@dataclasses.dataclass(frozen=True)
class LearnedPQ(Compressor):
    """Product quantizers of the unit embeddings, one per byte budget.

    ``dim`` (the size argument) is the budget m in bytes: :meth:`compress` returns the
    documents' decoded codes ``(n, d)``, :meth:`compress_queries` the transformed float
    queries; their inner product is the asymmetric score (``metric = "ip"``).

    Attributes:
      transforms: m -> (D, d) float32 ``W``. centroids: m -> (m, 256, d / m) float32.
    """

    transforms: dict
    centroids: dict
    metric = "ip"
    product_codes = True

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.transforms, reverse=True))

    def _check(self, m: int) -> int:
        if int(m) not in self.transforms:
            raise ValueError(f"{m} B: this product quantizer holds budgets {self.sizes} (bytes)")
        return int(m)

    def bytes_per_vector(self, dim: int) -> int:
        return self._check(dim)

    def transform(self, x, m: int) -> np.ndarray:
        x = np.asarray(l2_normalize(jnp.asarray(x, jnp.float32)))
        return x @ self.transforms[self._check(m)]

    def encode(self, x, m: int, chunk: int = 65536) -> np.ndarray:
        """(n, D) embeddings -> (n, m) uint8 codes: each sub-vector's nearest centroid."""
        c = jnp.asarray(self.centroids[self._check(m)])
        out = [
            np.asarray(_assign(jnp.asarray(self.transform(x[i : i + chunk], m)), c))
            for i in range(0, len(x), chunk)
        ]
        return np.concatenate(out).astype(np.uint8) if out else np.zeros((0, m), np.uint8)

    def decode(self, codes: np.ndarray, m: int) -> np.ndarray:
        c = self.centroids[self._check(m)]
        return c[np.arange(m)[None, :], np.asarray(codes, np.int64)].reshape(len(codes), -1)

    def compress(self, x, dim: int) -> jax.Array:
        return jnp.asarray(self.decode(self.encode(x, dim), dim))

    # The Python API's shape (smec_jax.fit(..., method="distill_pq") returns this object):
    # size = bytes per document.

    def encode_documents(self, docs, size: int) -> np.ndarray:
        """(n, D) embeddings (array or .npy path) -> (n, size) uint8 codes."""
        from smec_jax.datasets import arrays

        return self.encode(arrays.unit_rows(docs, "docs", self.input_dim), size)

    def encode_queries(self, queries, size: int) -> np.ndarray:
        """(n, D) query embeddings -> (n, d) float32, to score against
        :meth:`decode_documents` by inner product (what faiss's index computes)."""
        from smec_jax.datasets import arrays

        return self.transform(arrays.unit_rows(queries, "queries", self.input_dim), size)

    def decode_documents(self, doc_codes, size: int) -> np.ndarray:
        return self.decode(doc_codes, size)

    @property
    def input_dim(self) -> int:
        return int(next(iter(self.transforms.values())).shape[0])

    def to_faiss(self, docs, size: int, ids=None):
        """A faiss index of the ``size``-byte codes of ``docs`` (:func:`to_faiss`), in an
        ``IndexIDMap`` over integer ``ids`` where given."""
        from smec_jax.datasets import arrays

        x = arrays.unit_rows(docs, "docs", self.input_dim)
        if ids is None:
            return to_faiss(self, size, x)
        from smec_jax.serving import faiss_index

        ids = faiss_index.checked_ids(ids, len(x))
        inner = to_faiss(self, size)
        out = faiss_index.faiss_module().IndexIDMap2(inner)
        out.referenced_objects = [inner]  # the wrapped index lives as long as the map
        out.add_with_ids(x, ids)
        return out

    def save(self, path) -> Path:
        """Writes ``path/pq.npz`` (every budget's transform and centroids), atomically."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays_ = {f"w{m}": self.transforms[m] for m in self.sizes}
        arrays_ |= {f"c{m}": self.centroids[m] for m in self.sizes}
        buf = io.BytesIO()
        np.savez(buf, **arrays_)
        files.atomic_write(path / FILE, buf.getvalue())
        return path

    def compress_queries(self, x, dim: int) -> jax.Array:
        return jnp.asarray(self.transform(x, dim))


FILE = "pq.npz"


def load(path) -> LearnedPQ:
    """A quantizer written by :meth:`LearnedPQ.save` (its folder or the ``pq.npz``)."""
    path = Path(path)
    f = path / FILE if path.is_dir() else path
    if not f.is_file():
        raise ValueError(f"{path}: no {FILE} here; give a folder written by save()")
    with np.load(f) as z:
        ms = sorted(int(k[1:]) for k in z.files if k.startswith("w"))
        return LearnedPQ({m: z[f"w{m}"] for m in ms}, {m: z[f"c{m}"] for m in ms})


def _sub_distances(z_nd: jax.Array, c_mkd: jax.Array) -> jax.Array:
    """(n, m, 256) squared distances of each sub-vector to its quantizer's centroids."""
    m, _, dsub = c_mkd.shape
    sub = z_nd.reshape(z_nd.shape[0], m, dsub)
    return (
        jnp.sum(sub**2, -1)[:, :, None]
        - 2.0 * jnp.einsum("nmd,mkd->nmk", sub, c_mkd)
        + jnp.sum(c_mkd**2, -1)[None, :, :]
    )


@jax.jit
def _assign(z_nd, c_mkd):
    return jnp.argmin(_sub_distances(z_nd, c_mkd), axis=-1)


def _reconstruct(z_nd, c_mkd, tau):
    """Hard reconstruction in the forward pass, the soft one's gradient (straight-through)."""
    dist = _sub_distances(z_nd, c_mkd)
    soft = jnp.einsum("nmk,mkd->nmd", jax.nn.softmax(-dist / tau, axis=-1), c_mkd)
    hard = jnp.take_along_axis(c_mkd[None], jnp.argmin(dist, -1)[:, :, None, None], 2)[:, :, 0]
    out = soft + jax.lax.stop_gradient(hard - soft)
    return out.reshape(z_nd.shape[0], -1)


def _loss(params, batch, tau, temperature):
    valid = batch["u_valid"][None, :]
    if "u_self" in batch:
        valid = valid & (jnp.arange(valid.shape[1])[None, :] != batch["u_self"][:, None])
    log_p = objective.teacher_log_probs(
        objective.cos_matrix(batch["u_q"], batch["u_d"]), valid, temperature
    )
    zq = l2_normalize(batch["u_q"]) @ params["w"]
    zd = _reconstruct(l2_normalize(batch["u_d"]) @ params["w"], params["c"], tau)
    return objective.listwise_kl(log_p, zq @ zd.T, valid, temperature)


def opq_init(x_nd: np.ndarray, m: int, dim: int, opq_iterations: int, seed: int):
    """(W, centroids) of faiss's OPQ + PQ (8 bits) on the unit rows ``x_nd``, after a
    projection on their top ``dim`` principal axes (uncentred: inner products kept up to
    the dropped axes; 0 = none)."""
    from smec_jax.serving import faiss_index

    faiss = faiss_index.faiss_module()
    x = np.asarray(x_nd, np.float32)
    n_in = x.shape[1]
    proj = np.eye(n_in, dtype=np.float32)
    if dim and dim < n_in:
        xc = x - x.mean(axis=0)
        evals, evecs = np.linalg.eigh(xc.T @ xc / len(x))
        proj = evecs[:, np.argsort(-evals)[:dim]].astype(np.float32)
    d = proj.shape[1]
    if d % m:
        raise ValueError(f"--config.pq.bytes {m}: does not divide the {d} quantized dims")
    z = np.ascontiguousarray(x @ proj)
    if opq_iterations:
        opq = faiss.OPQMatrix(d, m)
        opq.niter = opq_iterations
        opq.verbose = False
        opq.train(z)
        rot = faiss.vector_to_array(opq.A).reshape(d, d)  # y = A z
        proj = proj @ rot.T
        z = np.ascontiguousarray(x @ proj)
    pq = faiss.ProductQuantizer(d, m, 8)
    pq.cp.seed = int(seed)
    pq.train(z)
    cent = faiss.vector_to_array(pq.centroids).reshape(m, KSUB, d // m)
    return proj.astype(np.float32), cent.astype(np.float32)


def fit(
    data,
    queries: np.ndarray,
    budgets,
    *,
    dim: int,
    steps: int,
    lr: float,
    batch: int,
    top: int,
    n_random: int,
    temperature: float,
    assign_temperature: float,
    opq_iterations: int,
    seed: int,
    self_rows: np.ndarray | None = None,
    verbose: bool = True,
) -> tuple[LearnedPQ, LearnedPQ]:
    """(trained, its OPQ initialisation): a quantizer per budget in ``budgets`` (bytes),
    trained for ``steps`` Adam steps at ``lr`` on the distillation batches of
    :func:`smec_jax.training.batches.distill_batches` over ``queries``."""
    corpus = np.asarray(l2_normalize(jnp.asarray(data.corpus, jnp.float32)))
    ds = batches.distill_batches(
        data, queries, batch=batch, top=top, n_random=n_random, seed=seed, self_rows=self_rows
    )
    opt = optax.adam(lr)
    trained, init = ({}, {}), ({}, {})
    for m in sorted({int(b) for b in budgets}, reverse=True):
        w0, c0 = opq_init(corpus, m, dim, opq_iterations, seed)
        init[0][m], init[1][m] = w0, c0
        z = jnp.asarray(corpus @ w0)
        hard = np.asarray(_reconstruct(z, jnp.asarray(c0), 1.0))
        err = float(np.mean(np.sum((np.asarray(z) - hard).reshape(len(z), m, -1) ** 2, -1)))
        tau = assign_temperature * max(err, 1e-12)

        @jax.jit
        def step(params, opt_state, b, tau=tau):
            loss, grads = jax.value_and_grad(_loss)(params, b, tau, temperature)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        params = {"w": jnp.asarray(w0), "c": jnp.asarray(c0)}
        opt_state = opt.init(params)
        start = time.perf_counter()
        for i in range(steps):
            b = {k: jnp.asarray(v) for k, v in ds[i].items()}
            params, opt_state, loss = step(params, opt_state, b)
            if verbose and ((i + 1) % 250 == 0 or i + 1 == steps):
                print(
                    f"learned PQ {m} B: step {i + 1}/{steps} | distill {float(loss):.4f} | "
                    f"ETA {eta(time.perf_counter() - start, i + 1, steps)}",
                    flush=True,
                )
        trained[0][m] = np.asarray(params["w"], np.float32)
        trained[1][m] = np.asarray(params["c"], np.float32)
        log.info("learned PQ %d B in %.1fs", m, time.perf_counter() - start)
    return LearnedPQ(*trained), LearnedPQ(*init)


def to_faiss(comp: LearnedPQ, m: int, docs=None):
    """A faiss index of ``comp``'s ``m``-byte quantizer: ``IndexPreTransform`` of the
    transform ``W`` (a ``LinearTransform``) over an inner-product ``IndexPQ`` holding the
    trained centroids; ``docs`` (n, D) added where given. Search it with unit queries."""
    from smec_jax.serving import faiss_index

    faiss = faiss_index.faiss_module()
    w, c = comp.transforms[comp._check(m)], comp.centroids[m]
    n_in, d = w.shape
    lt = faiss.LinearTransform(n_in, d, False)
    faiss.copy_array_to_vector(np.ascontiguousarray(w.T).ravel(), lt.A)
    lt.is_trained = True
    pq_index = faiss.IndexPQ(d, m, 8, faiss.METRIC_INNER_PRODUCT)
    faiss.copy_array_to_vector(np.ascontiguousarray(c).ravel(), pq_index.pq.centroids)
    pq_index.is_trained = True
    index = faiss.IndexPreTransform(lt, pq_index)
    index.referenced_objects = [lt, pq_index]  # the SWIG objects live as long as the index
    if docs is not None:
        index.add(np.asarray(l2_normalize(jnp.asarray(docs, jnp.float32))))
    return index


# distill_pseudo's candidates (each query's full-size top 32 and 512 random documents), half
# its queries per step: each step also quantizes every candidate
PSEUDO = {
    "train.unlabelled_queries": "pseudo",
    "train.distill_batch": 64,
    "train.distill_top": 32,
    "train.distill_random": 512,
}


def _fitter(overrides):
    def fitted(cfg, data, workdir=None, *, verbose: bool = True, **_) -> Fitted:
        del workdir  # minutes on CPU; refitted rather than checkpointed
        cfg = apply_overrides(cfg, overrides)
        data = pseudo_queries.attach_for(cfg, data)
        queries, source = batches.unlabelled_queries(
            data, None, cfg.train.split, cfg.train.unlabelled_queries
        )
        if verbose:
            print(f"learned PQ: distillation queries: {source}", flush=True)
        t, p = cfg.train, cfg.pq
        comp, _ = fit(
            data,
            queries,
            p.bytes,
            dim=p.dim,
            steps=p.steps,
            lr=p.lr,
            batch=t.distill_batch,
            top=t.distill_top,
            n_random=t.distill_random,
            temperature=t.distill_temperature,
            assign_temperature=p.assign_temperature,
            opq_iterations=p.opq_iterations,
            seed=cfg.seed,
            self_rows=batches.own_rows(cfg, data, len(queries)),
            verbose=verbose,
        )
        return Fitted(comp)

    return fitted


register(
    Method(
        "distill_pq",
        "label_free",
        True,
        _fitter(PSEUDO),
        PSEUDO,
        "faiss PQ codes (OPQ-initialised) trained by distillation on pseudo-queries",
    )
)
DOCS = {**PSEUDO, "data.pseudo_rule": pseudo_queries.DOCUMENTS}
register(
    Method(
        "distill_pq_docs",
        "label_free",
        True,
        _fitter(DOCS),
        DOCS,
        "distill_pq with the corpus documents as queries (no texts, no encoder)",
    )
)
