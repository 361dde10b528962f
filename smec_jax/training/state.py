"""The train state: everything a resumed run needs, as one pytree, and how it moves.

* :class:`TrainState` — params, ADS logits, optimizer state, S-XBM memory, RNG, counters.
* :func:`make_optimizer` — Adam on the compressor, Adam with its own rate on the logits.
* :func:`state_shardings` — replicated, except an optionally sharded memory queue.
* :func:`next_stage` — the stage boundary: the optimizer state is reset there, because the
  trainable set changes and Adam moments of columns that just froze must not leak into
  them (the step's post-optimizer update mask makes that impossible anyway).
* :func:`snapshot` — the early-stopping record (copies of params and logits).
* :func:`init_stage_logits` — a stage's ADS logits from the kept dims' output variance.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from smec_jax import parallel
from smec_jax.core import ads, exported, memory, model, smrl


@flax.struct.dataclass
class TrainState:
    """step: global step; stage: current stage t (T + 1 when done); stage_step: step in stage;
    params: compressor; ads: {stage_t: logits}; opt_state; memory: S-XBM ring buffer;
    rng: base key (per-step keys are fold_in(rng, step)); first_bad_step: first step with a
    non-finite loss, -1 if none."""

    step: jax.Array
    stage: jax.Array
    stage_step: jax.Array
    params: dict
    ads: dict
    opt_state: Any
    memory: memory.Memory
    rng: jax.Array
    first_bad_step: jax.Array


LR_DECAYS = ("constant", "cosine", "linear")


def lr_factor(decay: str, stage_step, steps: int):
    """The learning rate's share at step ``stage_step`` of a stage of ``steps``: 1 throughout
    ("constant"), or from 1 at the first step towards 0 at the stage's end, along a half
    cosine or a line. Adam's update is proportional to its learning rate, so scaling the
    update by this factor is Adam on the decayed rate."""
    if decay == "constant":
        return jnp.float32(1.0)
    frac = jnp.asarray(stage_step, jnp.float32) / steps
    if decay == "cosine":
        return 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return 1.0 - frac


def make_optimizer(cfg) -> optax.GradientTransformation:
    """Adam on the compressor, Adam with its own learning rate on the ADS logits."""
    return optax.multi_transform(
        {"model": optax.adam(cfg.train.lr), "ads": optax.adam(cfg.train.ads_lr)},
        {"params": "model", "ads": "ads"},
    )


def trainable(state_or_tree) -> dict:
    """The differentiated part of the state: ``{"params", "ads"}``."""
    return {"params": state_or_tree.params, "ads": state_or_tree.ads}


def create_train_state(
    cfg,
    in_dim: int,
    out_dim: int,
    sizes: tuple[int, ...],
    corpus: np.ndarray | None = None,
    n_ids: int = 1,
    init_params: dict | None = None,
) -> TrainState:
    """Fresh state. ``model.init = "pca"`` (linear only) needs the corpus embeddings;
    ``n_ids`` > 1: the memory tracks which of that many ids it holds (list mode);
    ``init_params`` (a compressor's params of the same kind and shapes) replaces the
    configured initialisation (a second training phase starts from the first's result)."""
    rng = jax.random.key(cfg.seed)
    params = model.init_params(
        jax.random.fold_in(rng, 1),
        cfg.model.kind,
        in_dim,
        out_dim,
        cfg.model.hidden,
        cfg.model.asymmetric,
    )
    if init_params is not None:
        params = model.replace_params(params, init_params)
    elif cfg.model.init == "pca":
        params = model.pca_init(params, corpus)
    logits = ads.init_logits(sizes)
    tree = {"params": params, "ads": logits}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        stage=jnp.ones((), jnp.int32),
        stage_step=jnp.zeros((), jnp.int32),
        params=params,
        ads=logits,
        opt_state=make_optimizer(cfg).init(tree),
        memory=memory.init(cfg.memory.size if cfg.memory.enabled else 1, in_dim, n_ids),
        rng=jax.random.key_data(rng),
        first_bad_step=jnp.full((), -1, jnp.int32),
    )


def state_shardings(cfg, mesh: Mesh) -> TrainState:
    """Sharding of every TrainState leaf: replicated, except an S-XBM memory that is sharded
    along its queue axis when ``memory.sharded`` (for memories too large to replicate)."""
    replicated = NamedSharding(mesh, P())
    queue = NamedSharding(mesh, P(parallel.DATA)) if cfg.memory.sharded else replicated
    mem = memory.Memory(
        entries=queue, ids=queue, valid=queue, ptr=replicated, counts=replicated, slot_of=replicated
    )
    return TrainState(
        step=replicated,
        stage=replicated,
        stage_step=replicated,
        params=replicated,
        ads=replicated,
        opt_state=replicated,
        memory=mem,
        rng=replicated,
        first_bad_step=replicated,
    )


def next_stage(state: TrainState, cfg, mesh: Mesh) -> TrainState:
    """The first state of the next stage: counters advanced, optimizer state reset."""
    return jax.device_put(
        state.replace(
            stage=state.stage + 1,
            stage_step=jnp.zeros((), jnp.int32),
            opt_state=make_optimizer(cfg).init(trainable(state)),
        ),
        state_shardings(cfg, mesh),
    )


def snapshot(state: TrainState, sharding: NamedSharding, score: float = -1.0) -> dict:
    """Early-stopping record: *copies* of params and logits (the state's buffers are donated),
    placed like the state so that every process saves and restores it alike."""
    copy = lambda tree: jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
    record = {
        "params": copy(state.params),
        "ads": copy(state.ads),
        "score": np.float32(score),
        "bad_evals": np.int32(0),
    }
    return jax.device_put(record, sharding)


def init_stage_logits(
    state: TrainState, stage: smrl.Stage, corpus: np.ndarray, scale: float, shardings
) -> TrainState:
    """Stage logits from the output variance of each kept dim on the corpus (standardised
    log-variance x scale): selection starts from the dims that carry the most signal and
    ADS learns from there. Deterministic, so a resumed run recomputes the same values."""
    y = exported.apply_numpy(jax.device_get(state.params), corpus[:4096])[:, stage.kept]
    lv = np.log(y.var(axis=0) + 1e-12)
    z = scale * (lv - lv.mean()) / (lv.std() + 1e-12)
    logits = dict(state.ads, **{ads.stage_name(stage.index): jnp.asarray(z, jnp.float32)})
    return jax.device_put(state.replace(ads=logits), shardings)
