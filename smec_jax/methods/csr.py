"""CSR (Wen et al., ICML 2025, "Beyond Matryoshka: Revisiting Sparse Coding for Adaptive
Representation"): a TopK sparse autoencoder on the frozen embeddings, the strongest
non-Matryoshka way to compress them.

  z_k = TopK_k(ReLU((x - b_pre) W_enc + b_enc)),   x_hat = z_k W_dec + b_pre

trained on the supervised batches with L = |x - x_hat(z_K)|^2 + |x - x_hat(z_4K)|^2 / 8
+ gamma * InfoNCE(queries' and documents' unit z_K, in-batch negatives). Any k <= the
hidden width is served by the top k of the same activations ("size" = k active latents).
A k-sparse code costs k x (2-byte index + 2-byte float16 value) bytes: :func:`bytes_per_vector`
(the Pareto report places CSR at that cost, not at k dims).

Built here from the paper's description (hidden width ``csr.hidden_mult`` x D, pre-bias
initialised to the corpus mean, decoder rows unit-norm, encoder = decoder transpose), with
the TopK autoencoder's dead-latent auxiliary loss (Gao et al. 2024) when ``csr.aux_k`` > 0:
a latent that has not been among any row's top k for ``csr.dead_steps`` steps is dead, and
the top ``aux_k`` dead activations of each row must reconstruct the main reconstruction's
residual, L_aux = |e - z_dead W_dec|^2 with e = stop_gradient(x - x_hat), weighted
``csr.aux_weight``. The trained parameters are kept in
``workdir/csr.npz``: a rerun with that file loads it (a killed run trains again from the
start).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from smec_jax import files, parallel
from smec_jax.core.compressor import Compressor
from smec_jax.core.retrieval import l2_normalize
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.methods.registry import Fitted, Method, register
from smec_jax.progress import eta
from smec_jax.training import batches as batching
from smec_jax.training import checks

INDEX_BYTES, VALUE_BYTES = 2, 2


def config_block() -> ml_collections.ConfigDict:
    """``config.csr``: the TopK sparse autoencoder, hidden = hidden_mult x D, trained with k
    active latents; served at any k (the Pareto report prices k at 4 bytes per latent)."""
    c = ml_collections.ConfigDict()
    c.hidden_mult = 4
    c.k = 32
    c.lr = 4e-4
    c.steps = 1200
    c.contrastive_weight = 1.0
    c.temperature = 0.1
    # Dead-latent auxiliary loss (0 = off): latents idle for dead_steps steps reconstruct the
    # residual with each row's top aux_k of them, weighted aux_weight (Gao et al.: 512, 1/32).
    c.aux_k = 0
    c.aux_weight = 1 / 32
    c.dead_steps = 50
    return c


checks.declare_block(
    "csr",
    config_block,
    {
        "csr.hidden_mult": checks.integer(1),
        "csr.k": checks.integer(1),
        "csr.lr": checks.real(0.0),
        "csr.steps": checks.integer(1),
        "csr.contrastive_weight": checks.real(0.0),
        "csr.temperature": checks.real(0.0, strict=True),
        "csr.aux_k": checks.integer(0),
        "csr.aux_weight": checks.real(0.0),
        "csr.dead_steps": checks.integer(1),
    },
)


def bytes_per_vector(k: int) -> int:
    """Bytes of a k-sparse code: a uint16 index and a float16 value per active latent."""
    return k * (INDEX_BYTES + VALUE_BYTES)


def _pre(params, x):
    return jax.nn.relu((x - params["b_pre"]) @ params["w_enc"] + params["b_enc"])


def _topk(h, k: int):
    """Keep each row's k largest activations (ties at the k-th value may keep a few more)."""
    kth = jax.lax.top_k(h, k)[0][:, -1:]
    return jnp.where(h >= kth, h, 0.0)


@dataclasses.dataclass(frozen=True)
class CSRCompressor(Compressor):
    """compress(x, k): the unit k-sparse code (n, hidden) of each row."""

    params: dict
    sparse = True

    def bytes_per_vector(self, dim: int) -> int:
        return bytes_per_vector(int(dim))

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        p = jax.tree.map(jnp.asarray, self.params)
        return l2_normalize(_topk(_pre(p, jnp.asarray(x, jnp.float32)), int(dim)))


def init_params(rng, corpus: np.ndarray, hidden: int) -> dict:
    d = corpus.shape[1]
    w = jax.random.normal(rng, (hidden, d), jnp.float32)
    w = w / jnp.linalg.norm(w, axis=1, keepdims=True)
    return {
        "w_dec": w,
        "w_enc": w.T,
        "b_enc": jnp.zeros((hidden,), jnp.float32),
        "b_pre": jnp.asarray(np.asarray(corpus, np.float32).mean(axis=0)),
    }


def aux_loss(params, h, residual, dead, aux_k: int):
    """The dead latents' reconstruction of ``residual``: each row's top ``aux_k``
    activations among the ``dead`` latents (bool (hidden,)), decoded without the pre-bias;
    0 when no latent is dead."""
    z = _topk(jnp.where(dead[None, :], h, 0.0), aux_k)
    err = jnp.mean(jnp.sum((residual - z @ params["w_dec"]) ** 2, axis=1))
    return jnp.where(jnp.any(dead), err, 0.0)


def make_loss(k: int, gamma: float, temperature: float, aux_k: int = 0, aux_weight: float = 0.0):
    """``loss_fn(params, batch, dead) -> (loss, aux)``; ``aux["fired"]`` (hidden,) marks the
    latents among some row's top k (for the dead-latent count)."""

    def loss_fn(params, batch, dead=None):
        x = jnp.concatenate([batch["q"], batch["d"]])
        h = _pre(params, x)
        z, z4 = _topk(h, k), _topk(h, 4 * k)
        x_hat = z @ params["w_dec"] + params["b_pre"]
        rec = jnp.mean(jnp.sum((x - x_hat) ** 2, axis=1))
        rec4 = jnp.mean(jnp.sum((x - (z4 @ params["w_dec"] + params["b_pre"])) ** 2, axis=1))
        nq = batch["q"].shape[0]
        zq, zd = l2_normalize(z[:nq]), l2_normalize(z[nq:])
        logits = zq @ zd.T / temperature
        target = batch["pos_idx"][:, 0]
        own = jnp.arange(logits.shape[1])[None, :] == target[:, None]
        other_pos = (batch["grades"] > 0) & ~own  # the query's other positives: not negatives
        logits = jnp.where(other_pos | ~batch["valid"], -1e9, logits)
        nce = -jnp.take_along_axis(jax.nn.log_softmax(logits), target[:, None], axis=1)[:, 0]
        ok = batch["pos_ok"][:, 0]
        cl = jnp.sum(jnp.where(ok, nce, 0.0)) / jnp.maximum(jnp.sum(ok), 1)
        loss = rec + rec4 / 8 + gamma * cl
        stats = {"rec": rec, "contrastive": cl, "fired": jnp.any(z > 0, axis=0)}
        if aux_k and dead is not None:
            stats["aux"] = aux_loss(params, h, jax.lax.stop_gradient(x - x_hat), dead, aux_k)
            loss = loss + aux_weight * stats["aux"]
        return loss, stats

    return loss_fn


def fit_csr(cfg, data, workdir=None, *, verbose: bool = True) -> Fitted:
    """Trains (or loads from ``workdir/csr.npz``) the sparse autoencoder; validation nDCG@10
    at k = each ladder size's quarter is reported for reference."""
    c = cfg.csr
    path = Path(workdir) / "csr.npz" if workdir else None
    sizes = tuple(int(s) for s in cfg.ladder)
    _, val_q, batches = batching.supervised_input(cfg, data)
    if path is not None and path.is_file():
        with np.load(path) as f:
            params = {k: f[k] for k in f.files}
    else:
        hidden = int(c.hidden_mult) * data.dim
        if not 0 <= int(c.aux_k) <= hidden:
            raise ValueError(
                f"csr.aux_k = {c.aux_k} must be between 0 (off) and the {hidden} latents"
            )
        params = init_params(jax.random.key(cfg.seed), data.corpus, hidden)
        opt = optax.adam(c.lr)
        state = opt.init(params)
        loss_fn = make_loss(
            int(c.k),
            float(c.contrastive_weight),
            float(c.temperature),
            int(c.aux_k),
            float(c.aux_weight),
        )
        dead_steps = int(c.dead_steps)

        @jax.jit
        def step(params, state, idle, batch):
            dead = idle >= dead_steps
            (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, dead)
            upd, state = opt.update(g, state, params)
            params = optax.apply_updates(params, upd)
            w = params["w_dec"]  # unit-norm decoder rows, as TopK autoencoders keep them
            params = dict(params, w_dec=w / jnp.linalg.norm(w, axis=1, keepdims=True))
            idle = jnp.where(aux.pop("fired"), 0, idle + 1)  # steps since each latent fired
            return params, state, idle, loss, aux | {"dead": jnp.sum(dead)}

        n_steps = int(c.steps)
        idle = jnp.zeros((params["b_enc"].shape[0],), jnp.int32)
        t0 = time.perf_counter()
        for i in range(n_steps):
            params, state, idle, loss, aux = step(params, state, idle, batches[i])
            if verbose and jax.process_index() == 0 and (i + 1) % cfg.train.log_every == 0:
                el = time.perf_counter() - t0
                print(
                    f"csr step {i + 1}/{n_steps} | loss {float(loss):.4f} rec "
                    f"{float(aux['rec']):.4f} contrastive {float(aux['contrastive']):.4f} "
                    f"dead {int(aux['dead'])} | ETA {eta(el, i + 1, n_steps)}",
                    flush=True,
                )
        params = jax.tree.map(np.asarray, params)
        if path is not None:
            with files.atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, **params)
    comp = CSRCompressor(params)
    val = {}
    if val_q:
        ev = Evaluator.from_config(
            data, cfg.eval, split=cfg.train.split, mesh=parallel.local_mesh()
        )
        val = {str(s): ev.mean_ndcg(comp, s, val_q) for s in sizes}
    return Fitted(comp, val)


register(
    Method(
        "csr",
        "peer",
        True,
        fit_csr,
        doc="TopK sparse autoencoder + contrastive loss (Wen et al. 2025); size = k active",
    )
)
