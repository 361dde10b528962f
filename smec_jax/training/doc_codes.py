"""Free per-document codes: the served corpus's compressed vectors, fitted directly.

A user compresses a corpus they hold, and every document's code is stored anyway, so the
codes need not be a function of the documents' embeddings. Here they start as a fitted
compressor's outputs for the corpus (its document map) and are then free parameters:
the same listwise distillation of the full-size ranking on pseudo-queries
(:func:`smec_jax.training.objective.listwise_kl`) fits them, with the query map fixed, since
tomorrow's queries must still go through a map. Every size is fitted at once as nested
prefixes, like the map. No judgment is read.

:class:`CorpusCodes` serves them: ``compress`` of exactly the fitted corpus (the same
float32 bytes) returns the fitted codes; any other documents (a new document, another
corpus) go through the document map, as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from smec_jax import files
from smec_jax.core import retrieval
from smec_jax.core.compressor import Compressor
from smec_jax.core.export import NestedCompressor
from smec_jax.core.retrieval import l2_normalize
from smec_jax.datasets.data import RetrievalData
from smec_jax.progress import eta
from smec_jax.training import objective

log = logging.getLogger(__name__)


def digest(x) -> str:
    """A content digest of an embedding matrix (its float32 bytes and shape)."""
    a = np.ascontiguousarray(np.asarray(x, np.float32))
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class CorpusCodes(Compressor):
    """A nested compressor whose fitted corpus has free codes.

    Attributes:
      base: the map (queries always; documents other than the fitted corpus).
      codes: (n_docs, N) float32, the fitted corpus's codes in the base's output order
        (size d = the first d, normalised).
      corpus_digest: :func:`digest` of the corpus embeddings they were fitted for.
    """

    base: NestedCompressor
    codes: np.ndarray
    corpus_digest: str

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.base.sizes

    def compress(self, x, dim: int) -> jax.Array:
        if np.shape(x)[0] == len(self.codes) and digest(x) == self.corpus_digest:
            return l2_normalize(jnp.asarray(self.codes[:, :dim]))
        return self.base.compress(x, dim)

    def compress_queries(self, x, dim: int) -> jax.Array:
        return self.base.compress_queries(x, dim)

    def nested_map(self) -> NestedCompressor:
        return self.base

    def corpus_codes(self) -> np.ndarray:
        return self.codes


def _loss(codes, q_full, q_comp, corpus, rows, valid, sizes, temperature):
    """Listwise KL of every size's prefix cosines (queries by the fixed map, documents by
    their free codes) to the full-size cosines, over the candidate ``rows`` where ``valid``
    (queries, candidates)."""
    log_p = objective.teacher_log_probs(
        objective.cos_matrix(q_full, corpus[rows]), valid, temperature
    )
    d_codes = codes[rows]
    total = 0.0
    for size in sizes:
        student = objective.cos_matrix(q_comp[:, :size], d_codes[:, :size])
        total = total + objective.listwise_kl(log_p, student, valid, temperature)
    return total


def fit(
    comp: NestedCompressor,
    data: RetrievalData,
    queries: np.ndarray,
    *,
    steps: int,
    lr: float,
    batch: int,
    top: int,
    n_random: int,
    temperature: float,
    seed: int,
    self_rows: np.ndarray | None = None,
    verbose: bool = True,
) -> CorpusCodes:
    """Fits the codes of ``data.corpus``, from ``comp``'s outputs, by ``steps`` Adam steps
    at ``lr`` of listwise distillation on the unlabelled ``queries``: each batch of
    ``batch`` queries is ranked over their full-size top ``top`` documents and ``n_random``
    random ones (the candidates of :func:`smec_jax.training.batches.distill_batches`).
    ``self_rows`` (per query, the corpus row that is the query, -1 for none: the
    pseudo-query rule ``documents``) leaves each such document out of its own ranking."""
    if len(queries) < batch:
        raise ValueError(
            f"document codes: a batch of {batch} queries but only {len(queries)} unlabelled "
            "queries; lower --config.train.distill_batch"
        )
    sizes = tuple(comp.sizes)
    n_out = max(sizes)
    corpus = jnp.asarray(data.corpus, jnp.float32)
    codes0 = np.asarray(comp.compress(corpus, n_out), np.float32)
    q_comp_all = np.asarray(comp.compress_queries(jnp.asarray(queries, jnp.float32), n_out))
    _, top_rows = retrieval.search(queries, data.corpus, top)
    opt = optax.adam(lr)

    @jax.jit
    def step(codes, opt_state, q_full, q_comp, rows, valid):
        loss, grads = jax.value_and_grad(_loss)(
            codes, q_full, q_comp, corpus, rows, valid, sizes, temperature
        )
        updates, opt_state = opt.update(grads, opt_state, codes)
        return optax.apply_updates(codes, updates), opt_state, loss

    rng = np.random.default_rng([seed, 11])
    codes = jnp.asarray(codes0)
    opt_state = opt.init(codes)
    epochs = -(-steps * batch // len(queries))
    order = np.concatenate([rng.permutation(len(queries)) for _ in range(epochs)])
    start = time.perf_counter()
    for i in range(steps):
        b = order[i * batch : (i + 1) * batch]
        rows = np.concatenate([top_rows[b].reshape(-1), rng.integers(0, len(corpus), n_random)])
        _, first = np.unique(rows, return_index=True)
        valid = np.zeros(rows.shape, bool)
        valid[first] = True
        valid = np.broadcast_to(valid, (len(b), len(rows)))
        if self_rows is not None:
            valid = valid & (rows[None, :] != self_rows[b][:, None])
        codes, opt_state, loss = step(
            codes,
            opt_state,
            jnp.asarray(queries[b], jnp.float32),
            jnp.asarray(q_comp_all[b]),
            jnp.asarray(rows),
            jnp.asarray(valid),
        )
        if verbose and ((i + 1) % 200 == 0 or i + 1 == steps):
            elapsed = time.perf_counter() - start
            print(
                f"document codes: step {i + 1}/{steps} | distill {float(loss):.4f} | "
                f"ETA {eta(elapsed, i + 1, steps)}",
                flush=True,
            )
    log.info("fitted %d document codes in %.1fs", len(codes0), time.perf_counter() - start)
    return CorpusCodes(comp, np.asarray(codes, np.float32), digest(data.corpus))


def save(codes: CorpusCodes, path, corpus_ids) -> None:
    """Writes the fitted corpus's codes (``codes``, float32, in the map's output order:
    size d is the first d, normalised) with their document ids (``ids``) as .npz,
    atomically; the map itself is saved as ``compressor.npz`` (:func:`export.save`)."""
    buf = io.BytesIO()
    np.savez(buf, ids=np.asarray(list(corpus_ids)), codes=codes.codes)
    files.atomic_write(path, buf.getvalue())
