"""SMEC training: a pure train step compiled once per SMRL stage, and the loop over stages.

Read top to bottom:
  1. TrainState           — everything a resumed run needs, as one pytree.
  2. make_loss_fn, make_train_step — the stage's loss (rank at d_{t-1} and d_t + alpha * S-XBM), with
                            frozen columns, ADS masks and the memory; jitted over the mesh.
  3. train                — mesh, input, state (fresh or restored), then for each stage:
                            compile, loop (log, validate, early-stop, checkpoint), fix the
                            stage's selection; returns the nested compressor.

The optimizer state is reset at every stage boundary: the trainable set changes, and Adam
moments of columns that just froze must not leak into them (the post-optimizer update mask
makes that impossible anyway).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from smec_jax import ads, evaluation, input_pipeline, losses, memory, model, parallel, smrl
from smec_jax.checkpoint import Checkpointer
from smec_jax.data import RetrievalData
from smec_jax.export import NestedCompressor
from smec_jax.retrieval import l2_normalize

log = logging.getLogger(__name__)

# ============================================================================ 1. train state


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


def make_optimizer(cfg) -> optax.GradientTransformation:
    """Adam on the compressor, Adam with its own learning rate on the ADS logits."""
    return optax.multi_transform(
        {"model": optax.adam(cfg.train.lr), "ads": optax.adam(cfg.train.ads_lr)},
        {"params": "model", "ads": "ads"},
    )


def _trainable(state_or_tree) -> dict:
    return {"params": state_or_tree.params, "ads": state_or_tree.ads}


def create_train_state(
    cfg, in_dim: int, out_dim: int, sizes: tuple[int, ...], corpus: np.ndarray | None = None
) -> TrainState:
    """Fresh state. ``model.init = "pca"`` (linear only) needs the corpus embeddings."""
    rng = jax.random.key(cfg.seed)
    params = model.init_params(
        jax.random.fold_in(rng, 1), cfg.model.kind, in_dim, out_dim, cfg.model.hidden
    )
    if cfg.model.init == "pca":
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
        memory=memory.init(cfg.memory.size if cfg.memory.enabled else 1, in_dim),
        rng=jax.random.key_data(rng),
        first_bad_step=jnp.full((), -1, jnp.int32),
    )


# ============================================================================ 2. the step


def _cos_matrix(a_nd, b_md, mask_d=None):
    if mask_d is not None:
        a_nd, b_md = a_nd * mask_d, b_md * mask_d
    return l2_normalize(a_nd) @ l2_normalize(b_md).T


def _neighbour_outputs(params, entries_qd, idx_nk, kept, mode: str = "auto", weights=()):
    """Compressed outputs (n, k, d) of memory neighbours, and their squared norms under each
    dim weighting in ``weights`` ((n, k) each), the cheaper of two ways.

    "gather": gather the n*k neighbours, then compress them: n*k*D*d multiply-adds.
    "memory": compress the whole memory once (Q*D*d), then gather outputs; the norms are
    then taken on the (Q, d) outputs and only gathered, never on (n, k, d) tensors.
    Both are exact; "auto" picks the cheaper statically (at the reference shape, n = 1152
    samples x k = 10 > Q = 5000, so compressing the memory costs 2.3x less).
    """
    n, k = idx_nk.shape
    q, _ = entries_qd.shape
    if mode == "gather" or (mode == "auto" and n * k < q):
        out = model.apply_cols(params, entries_qd[idx_nk.reshape(-1)], kept).reshape(n, k, -1)
        sq = out * out
        return out, [jnp.einsum("nkd,d->nk", sq, w) for w in weights]
    ym = model.apply_cols(params, entries_qd, kept)  # (Q, d)
    sq = ym * ym
    return ym[idx_nk], [(sq @ w)[idx_nk] for w in weights]


def _unsup_term(mem, x_nd, ids_n, keep_n, y_nd, params, kept, masks, k, mode="auto", mesh=None):
    """S-XBM loss of the samples against their memory neighbours, summed over sizes.

    Cosines under a dim mask m are computed as <a, m^2 b> / sqrt(|a|^2_{m^2} |b|^2_{m^2}),
    equal in value and gradient to cos(a * m, b * m) but without materialising a masked and
    a normalised copy of the (n, k, d) neighbour tensor for every size: on CPU those
    elementwise passes, not the matmuls, dominated the S-XBM term.

    With ``mesh``, the memory is sharded along its queue axis (per-shard top-k, then merge).
    """
    if mesh is None:
        idx, orig_sim, ok = memory.neighbours(mem, x_nd, ids_n, k)
    else:
        idx, orig_sim, ok = memory.neighbours_sharded(mem, x_nd, ids_n, k, mesh, parallel.DATA)
    ok = ok & keep_n[:, None]
    d = y_nd.shape[1]
    weights = [jnp.ones((d,), y_nd.dtype) if m is None else m * m for m in masks]
    y_nbr, nbr_sq = _neighbour_outputs(params, mem.entries, idx, kept, mode, weights)
    total = 0.0
    for w, b_sq in zip(weights, nbr_sq, strict=True):
        num = jnp.einsum("nd,nkd->nk", y_nd * w, y_nbr)
        a_sq = (y_nd * y_nd) @ w
        comp_sim = num * jax.lax.rsqrt(jnp.maximum(a_sq[:, None] * b_sq, 1e-24))
        total = total + losses.unsup_loss(orig_sim, comp_sim, ok)
    return total


def make_loss_fn(stage: smrl.Stage, cfg, out_dim: int, supervised: bool, mesh) -> Callable:
    """The stage's loss ``(tree, state, batch, rng) -> (loss, (metrics, x, ids, keep))``, with
    ``tree = {"params", "ads"}``: rank at d_{t-1} and d_t (all ladder sizes for the joint
    schedule) + alpha * S-XBM (+ Matryoshka-Adaptor's terms when enabled)."""
    kept, name = stage.kept, ads.stage_name(stage.index)
    trainable_n = stage.trainable(out_dim)
    prefixes = [np.arange(stage.d_prev) < size for size in stage.loss_sizes]  # no-ADS masks
    scale, alpha = cfg.train.score_scale, cfg.memory.alpha
    steps = cfg.train.steps_per_stage

    def loss_fn(tree, state: TrainState, batch, rng):
        params = model.freeze_columns(tree["params"], trainable_n)
        tau = ads.tau_schedule(state.stage_step, steps, cfg.ads.tau_start, cfg.ads.tau_end)
        if cfg.ads.enabled:  # joint schedule: one noise draw, so the masks of all sizes nest
            z = tree["ads"][name]
            smaller = tuple(ads.gumbel_topk_mask(rng, z, d, tau) for d in stage.loss_sizes)
        else:
            smaller = tuple(jnp.asarray(p, jnp.float32) for p in prefixes)
        masks = (None, *smaller)  # size d_{t-1} (all kept dims), then the selected sizes
        metrics = {"tau": tau}
        if supervised:
            yq = model.apply_cols(params, batch["q"], kept)
            yd = model.apply_cols(params, batch["d"], kept)
            rank_args = (batch["grades"], batch["valid"], batch["pos_idx"], batch["pos_ok"])
            rank = 0.0
            for mask, w in zip(
                masks, (cfg.train.full_weight,) + (1.0,) * len(smaller), strict=True
            ):
                rank = rank + w * losses.rank_loss(scale * _cos_matrix(yq, yd, mask), *rank_args)[0]
            for _, cols in stage.earlier if cfg.train.keep_weight else ():
                s = _cos_matrix(
                    model.apply_cols(params, batch["q"], cols),
                    model.apply_cols(params, batch["d"], cols),
                )
                rank = rank + cfg.train.keep_weight * losses.rank_loss(scale * s, *rank_args)[0]
            x = jnp.concatenate([batch["q"], batch["d"]])
            ids = jnp.concatenate([batch["q_ids"], batch["d_ids"]])
            keep = jnp.concatenate([jnp.ones(batch["q_ids"].shape, bool), batch["d_keep"]])
            y = jnp.concatenate([yq, yd])
            metrics["rank"] = rank
        else:
            x, ids, keep = batch["x"], batch["ids"], batch["keep"]
            y = model.apply_cols(params, x, kept)
            rank = 0.0
        if cfg.memory.enabled:
            unsup = _unsup_term(
                state.memory,
                x,
                ids,
                keep,
                y,
                params,
                kept,
                masks,
                cfg.memory.k,
                cfg.memory.neighbour_mode,
                mesh if cfg.memory.sharded else None,
            )
        else:
            unsup = jnp.zeros(())
        metrics["unsup"] = unsup
        loss = rank + (alpha if supervised else 1.0) * unsup
        if cfg.adaptor.enabled:  # Matryoshka-Adaptor's losses on the batch's own samples
            ad = cfg.adaptor
            rec = losses.reconstruction(x * keep[:, None], y * keep[:, None])
            metrics["rec"] = rec
            loss = loss + ad.rec_weight * rec
            if ad.topk_weight:
                metrics["topk"] = losses.similarity_preservation(x, y, masks, ad.topk, keep)
                loss = loss + ad.topk_weight * metrics["topk"]
            if ad.pair_weight:
                metrics["pair"] = losses.similarity_preservation(x, y, masks, None, keep)
                loss = loss + ad.pair_weight * metrics["pair"]
        return loss, (metrics, x, ids, keep)

    return loss_fn


def make_train_step(stage: smrl.Stage, cfg, out_dim: int, supervised: bool, mesh) -> Callable:
    """The jitted ``(state, batch) -> (state, metrics)`` of one stage (sizes, masks static)."""
    name = ads.stage_name(stage.index)
    trainable_n = stage.trainable(out_dim)
    loss_fn = make_loss_fn(stage, cfg, out_dim, supervised, mesh)
    opt = make_optimizer(cfg)
    traces = 0

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        nonlocal traces  # like chex.assert_max_traces(n=1), but per stage's step
        traces += 1
        if traces > 1:
            raise AssertionError(
                f"stage {stage.index}: train step traced twice (batch shapes changed?)"
            )
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        tree = _trainable(state)
        (loss, (metrics, x, ids, keep)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            tree, state, batch, rng
        )
        updates, opt_state = opt.update(grads, state.opt_state, tree)
        # Nothing outside this stage's trainable columns and logits may move.
        umask = {
            "params": model.column_update_mask(tree["params"], trainable_n),
            "ads": {k: jnp.float32(k == name) for k in tree["ads"]},
        }
        updates = jax.tree.map(lambda u, mk: u * mk, updates, umask)
        new = optax.apply_updates(tree, updates)
        mem = memory.enqueue(state.memory, x, ids, keep) if cfg.memory.enabled else state.memory
        bad = ~jnp.isfinite(loss)
        first_bad = jnp.where(bad & (state.first_bad_step < 0), state.step, state.first_bad_step)
        metrics["loss"] = loss
        new_state = state.replace(
            step=state.step + 1,
            stage_step=state.stage_step + 1,
            params=new["params"],
            ads=new["ads"],
            opt_state=opt_state,
            memory=mem,
            first_bad_step=first_bad,
        )
        return new_state, metrics

    replicated = NamedSharding(mesh, P())
    return jax.jit(step, donate_argnums=0, out_shardings=(state_shardings(cfg, mesh), replicated))


def state_shardings(cfg, mesh):
    """Sharding of every TrainState leaf: replicated, except an S-XBM memory that is sharded
    along its queue axis when ``memory.sharded`` (for memories too large to replicate)."""
    replicated = NamedSharding(mesh, P())
    queue = NamedSharding(mesh, P(parallel.DATA)) if cfg.memory.sharded else replicated
    mem = memory.Memory(entries=queue, ids=queue, valid=queue, ptr=replicated)
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


# ============================================================================ 3. the loop


@dataclasses.dataclass
class TrainResult:
    compressor: NestedCompressor
    sets: list[np.ndarray]  # S_0 .. S_T
    val_history: list[dict]
    val_ndcg: dict[str, float]  # validation nDCG@10 of the final compressor per size


class NonFiniteLoss(FloatingPointError):
    pass


def _stage_selection(state: TrainState, stage: smrl.Stage, sizes, ads_enabled: bool) -> np.ndarray:
    """The output dims of size d_t as inference would pick them now (S_t); for the joint
    schedule, those of the smallest size."""
    if not ads_enabled:  # prefixes of the kept dims
        return stage.kept[: stage.d_next]
    logits = jax.tree.map(np.asarray, state.ads)
    if stage.also:  # joint schedule with ADS: the top d_T of the one logit vector
        return smrl.kept_sets(sizes, logits, len(sizes) - 1, joint=True)[-1]
    return smrl.kept_sets(sizes, logits, stage.index)[stage.index]


def _val_ndcg(data, params, cols, val_qids, split, mesh, corpus) -> float:
    # Host copies: validation runs the same on every process, on its local devices.
    comp = NestedCompressor(
        params=jax.device_get(params), order=np.asarray(cols), sizes=(len(cols),)
    )
    qrels = data.qrels_for(split)
    per_q = evaluation.score(data, comp, len(cols), val_qids, qrels, mesh=mesh, corpus=corpus)
    return float(per_q["ndcg@10"].mean())


def _put_batch(batch: dict, sharding: NamedSharding) -> dict:
    """Global batch arrays from this process's slice of each host batch (leading axis).

    Every array is sharded along its leading axis over the mesh's data axis; process p holds
    the p-th contiguous block, which is what its devices address.
    """
    n_proc, pid = jax.process_count(), jax.process_index()
    out = {}
    for k, v in batch.items():
        rows = v.shape[0] // n_proc
        local = np.ascontiguousarray(v[pid * rows : (pid + 1) * rows])
        out[k] = jax.make_array_from_process_local_data(sharding, local, v.shape)
    return out


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# Methods the trainer runs, as switches on the same code path. Ablations of SMEC (the
# paper's ablation table): mrl trains every size at once as prefixes, mrl_smrl trains them
# sequentially, mrl_ads trains them at once on dims chosen by ADS (one logit vector over
# all N dims; each size takes its top d of the same noisy logits, so the sets nest),
# mrl_sxbm adds the memory loss to MRL. Matryoshka-Adaptor (Yoon et al. 2024):
# a residual MLP trained on all prefix sizes jointly with in-batch similarity preservation
# (L_topk + L_pair + L_rec), plus the rank loss when supervised.
_MRL = {"schedule": "joint", "ads": False, "memory": False}
_MA = {**_MRL, "kind": "residual_mlp", "adaptor": True}
# Search-Adaptor (Yoon et al. 2024): one linear adaptor per target size, rank loss at that
# size only plus L1 reconstruction; `fit_search_adaptor` runs it once per ladder size.
_SA = {**_MRL, "adaptor": True, "full_weight": 0.0, "adaptor_weights": (0.0, 0.0)}
METHOD_PARTS = {
    "smec": {},
    "smec_unsup": {"supervised": False},
    "mrl": _MRL,
    "mrl_smrl": {"schedule": "sequential", "ads": False, "memory": False},
    "mrl_ads": {**_MRL, "ads": True},
    "mrl_sxbm": {**_MRL, "memory": True},
    "matryoshka_adaptor": _MA,
    "matryoshka_adaptor_unsup": {**_MA, "supervised": False},
    "search_adaptor": _SA,
}
METHODS = tuple(METHOD_PARTS)


def is_supervised(method: str) -> bool:
    return METHOD_PARTS.get(method, {}).get("supervised", True)


def method_config(cfg):
    """The config a method actually trains with (switches parts on or off)."""
    parts = METHOD_PARTS.get(cfg.method, {})
    if not set(parts) - {"supervised"}:
        return cfg
    cfg = cfg.copy_and_resolve_references()
    cfg.train.schedule = parts.get("schedule", cfg.train.schedule)
    cfg.ads.enabled = parts.get("ads", cfg.ads.enabled)
    cfg.memory.enabled = parts.get("memory", cfg.memory.enabled)
    cfg.adaptor.enabled = parts.get("adaptor", cfg.adaptor.enabled)
    if parts.get("kind"):
        cfg.model.kind, cfg.model.init = parts["kind"], "identity"
    if "full_weight" in parts:
        cfg.train.full_weight = parts["full_weight"]
        cfg.model.init = "identity"
    if "adaptor_weights" in parts:  # Search-Adaptor keeps only the reconstruction term
        cfg.adaptor.topk_weight, cfg.adaptor.pair_weight = parts["adaptor_weights"]
    return cfg


@dataclasses.dataclass(frozen=True)
class PerSizeCompressor:
    """One separately trained compressor per size (Search-Adaptor)."""

    by_size: dict[int, NestedCompressor]

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        if dim not in self.by_size:
            raise ValueError(f"no adaptor trained for size {dim}; sizes {sorted(self.by_size)}")
        return self.by_size[dim].compress(x, dim)


def fit(cfg, data: RetrievalData, workdir: str | Path | None = None, verbose: bool = True):
    """Trains ``cfg.method`` (any of :data:`METHODS`); returns (compressor, validation nDCG@10
    per size)."""
    if cfg.method == "search_adaptor":  # one adaptor per size
        return fit_search_adaptor(cfg, data, workdir, verbose)
    result = train(cfg, data, workdir, verbose=verbose)
    return result.compressor, result.val_ndcg


def fit_search_adaptor(
    cfg, data: RetrievalData, workdir: str | Path | None = None, verbose: bool = True
) -> tuple[PerSizeCompressor, dict[str, float]]:
    """Trains one Search-Adaptor per ladder size below N (a run each, resumable in
    ``workdir/size_D``); the full size is the original embedding (identity map)."""
    sizes = smrl.sizes_for(cfg.ladder, cfg.model.out_dim or data.dim)
    by_size, val = {}, {}
    for d in sizes[1:]:
        c = cfg.copy_and_resolve_references()
        c.ladder = (sizes[0], d)
        res = train(c, data, Path(workdir) / f"size_{d}" if workdir else None, verbose=verbose)
        by_size[d], val[str(d)] = res.compressor, res.val_ndcg[str(d)]
    ident = model.init_params(jax.random.key(0), "linear", data.dim, sizes[0], 0)
    by_size[sizes[0]] = NestedCompressor(model.to_numpy(ident), np.arange(sizes[0]), (sizes[0],))
    val[str(sizes[0])] = float("nan")
    return PerSizeCompressor(by_size), val


def validate_config(cfg, data: RetrievalData, n_devices: int) -> tuple[int, ...]:
    """Checks a config against the data before anything compiles; returns the size chain."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; use one of {', '.join(METHODS)}")
    cfg = method_config(cfg)
    if cfg.train.schedule not in ("sequential", "joint"):
        raise ValueError(f"unknown train.schedule {cfg.train.schedule!r}; use sequential or joint")
    if cfg.model.kind not in model.KINDS:
        raise ValueError(f"unknown model.kind {cfg.model.kind!r}; use one of {model.KINDS}")
    out_dim = cfg.model.out_dim or data.dim
    sizes = smrl.sizes_for(cfg.ladder, out_dim)
    if len(sizes) < 2:
        raise ValueError(
            f"ladder {tuple(cfg.ladder)} has no size below {out_dim}: nothing to train"
        )
    if cfg.memory.enabled and cfg.memory.size < cfg.memory.k:
        raise ValueError(f"memory.size {cfg.memory.size} is smaller than memory.k {cfg.memory.k}")
    if cfg.memory.enabled and cfg.memory.sharded and cfg.memory.size % n_devices:
        raise ValueError(
            f"memory.size {cfg.memory.size} is not divisible by the {n_devices} devices it is "
            "sharded over; change --config.memory.size"
        )
    per_step = cfg.train.batch_queries if is_supervised(cfg.method) else cfg.train.unsup_batch
    if per_step % n_devices:
        raise ValueError(
            f"batch of {per_step} is not divisible by the {n_devices} devices; change "
            "--config.train.batch_queries (or unsup_batch) or --config.mesh.num_devices"
        )
    for key in ("steps_per_stage", "eval_every", "log_every", "ckpt_every"):
        if int(cfg.train[key]) < 1:
            raise ValueError(f"train.{key} must be >= 1")
    return sizes


@dataclasses.dataclass
class _Run:
    """What every stage of one training run shares (host side)."""

    cfg: Any
    data: RetrievalData
    sizes: tuple[int, ...]
    n_stages: int
    mesh: Any
    supervised: bool
    batches: Any
    val_q: list[str]
    corpus: jax.Array
    ckpt: Checkpointer | None
    writer: _MetricWriter | None
    verbose: bool
    on_step: Callable[[int], None] | None
    eval_mesh: Any = None  # this process's devices: validation runs on every host alike
    history: list[dict] = dataclasses.field(default_factory=list)
    t_start: float = 0.0
    step_start: int = 0

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())


def supervised_input(cfg, data: RetrievalData):
    """(training query ids, validation query ids, batches indexed by global step) of a
    supervised method: validation carved from ``cfg.train.split``, hard negatives mined."""
    split = cfg.train.split
    train_q, val_q = input_pipeline.split_train_val(
        data, split, cfg.train.val_fraction, cfg.seed, cfg.train.val_unseen
    )
    tq = input_pipeline.resolve(data, split, train_q, cfg.train.hard_pool)
    batches = input_pipeline.supervised_batches(
        data,
        tq,
        batch_queries=cfg.train.batch_queries,
        n_pos=cfg.train.n_pos,
        n_hard=cfg.train.n_hard,
        seed=cfg.seed,
    )
    return train_q, val_q, batches


def train(
    cfg,
    data: RetrievalData,
    workdir: str | Path | None = None,
    *,
    verbose: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Trains SMEC (or label-free ``smec_unsup``) on ``data``; resumes from ``workdir``.

    Args:
      cfg: the config (see configs/default.py).
      data: the embedded dataset (training uses the train split; validation is carved from
        it; test qrels are never read here).
      workdir: checkpoints, metrics.jsonl and TensorBoard events go here; None = no files.
      verbose: print a progress line (losses, steps/s, ETA) every ``log_every`` steps.
      on_step: called with the global step after each step (tests use it to interrupt).
    """
    # -- mesh and sizes (fail before compiling anything)
    n_dev = cfg.mesh.num_devices or jax.device_count()
    sizes = validate_config(cfg, data, n_dev)
    cfg = method_config(cfg)
    n_stages = 1 if cfg.train.schedule == "joint" else len(sizes) - 1
    mesh = parallel.data_mesh(n_dev)
    supervised = is_supervised(cfg.method)

    # -- input: batches indexed by global step; validation carved from the train split
    split = cfg.train.split
    if supervised:
        _, val_q, batches = supervised_input(cfg, data)
    else:  # label-free: no qrels at all, so no validation either (fixed steps per stage)
        batches = input_pipeline.unsupervised_batches(
            data, batch_size=cfg.train.unsup_batch, seed=cfg.seed
        )
        val_q = []

    # -- state: fresh, or the latest checkpoint of this workdir
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(
        create_train_state(cfg, data.dim, sizes[0], sizes, data.corpus), state_shardings(cfg, mesh)
    )
    best = _snapshot(state, replicated)
    ckpt = Checkpointer(Path(workdir) / "checkpoints") if workdir else None
    if ckpt and ckpt.latest_step() is not None:
        restored = ckpt.restore({"state": state, "best": best})
        state, best = restored["state"], restored["best"]
        log.info(
            "resumed from step %d (stage %d, step %d in stage)",
            int(state.step),
            int(state.stage),
            int(state.stage_step),
        )
    run = _Run(
        cfg=cfg,
        data=data,
        sizes=sizes,
        n_stages=n_stages,
        mesh=mesh,
        supervised=supervised,
        batches=batches,
        val_q=val_q,
        corpus=jnp.asarray(data.corpus),
        ckpt=ckpt,
        writer=_MetricWriter(workdir) if workdir and jax.process_index() == 0 else None,
        verbose=verbose,
        on_step=on_step,
        eval_mesh=parallel.local_mesh(),
        t_start=time.perf_counter(),
        step_start=int(state.step),
    )

    # -- stages: each compiles its own step; a resumed run starts in its unfinished stage
    try:
        while int(state.stage) <= n_stages:
            state = _run_stage(run, state, best)
            best = _snapshot(state, replicated)
            if ckpt:
                _check_finite(state, ckpt)
                ckpt.save(int(state.step), {"state": state, "best": best})
    finally:  # an interrupted run still completes its last save
        if ckpt:
            ckpt.close()
        if run.writer:
            run.writer.close()

    # -- the nested compressor, and its validation scores at every size
    logits = jax.tree.map(np.asarray, state.ads) if cfg.ads.enabled else None
    sets = smrl.kept_sets(sizes, logits, len(sizes) - 1, joint=cfg.train.schedule == "joint")
    comp = NestedCompressor(
        params=model.to_numpy(state.params), order=smrl.nested_order(sets), sizes=tuple(sizes)
    )
    val_ndcg = {}
    for dim in sizes if val_q else ():
        per_q = evaluation.score(
            data, comp, dim, val_q, data.qrels_for(split), mesh=run.eval_mesh, corpus=run.corpus
        )
        val_ndcg[str(dim)] = float(per_q["ndcg@10"].mean())
    return TrainResult(compressor=comp, sets=sets, val_history=run.history, val_ndcg=val_ndcg)


def _run_stage(run: _Run, state: TrainState, best: dict) -> TrainState:
    """Trains stage ``state.stage`` to its end (step budget or early stop); returns the state
    of the next stage: best params of this one, S_t fixed, optimizer reset."""
    cfg, t = run.cfg, int(state.stage)
    logits = jax.tree.map(np.asarray, state.ads) if cfg.ads.enabled else None
    if cfg.train.schedule == "joint":
        stage = smrl.joint_stage(run.sizes)
    else:
        stage = smrl.make_stage(t, run.sizes, logits)
    if cfg.ads.enabled and cfg.ads.init == "variance" and int(state.stage_step) == 0:
        state = _init_stage_logits(
            state, stage, run.data.corpus, cfg.ads.init_scale, state_shardings(cfg, run.mesh)
        )
    step_fn = make_train_step(stage, cfg, run.sizes[0], run.supervised, run.mesh)
    # Host-side counters mirror the state's, so the loop never waits on the device except at
    # log, validation and checkpoint steps; batches are built and placed ahead by a thread.
    step, stage_step = int(state.step), int(state.stage_step)
    feed = input_pipeline.Prefetcher(
        run.batches, step, lambda b: _put_batch(b, NamedSharding(run.mesh, P(parallel.DATA)))
    )
    stopped = False
    try:
        while stage_step < cfg.train.steps_per_stage:
            if stage_step % cfg.train.eval_every == 0 and run.val_q:
                stopped, best = _validate(run, state, best, stage)
                if stopped:
                    break
            state, metrics = step_fn(state, feed.next())
            step, stage_step = step + 1, stage_step + 1
            if step % cfg.train.log_every == 0 or stage_step == cfg.train.steps_per_stage:
                _check_finite(state, run.ckpt)
                _log_progress(run, state, stage, metrics)
            if run.ckpt and step % cfg.train.ckpt_every == 0:
                _check_finite(state, run.ckpt)
                run.ckpt.save(step, {"state": state, "best": best})
            if run.on_step:
                run.on_step(step)
    finally:
        feed.close()
    # Final validation, then keep the best params of the stage and fix S_t.
    if run.val_q:
        if not stopped:
            best = _validate(run, state, best, stage, final=True)[1]
        state = state.replace(params=best["params"], ads=best["ads"])
    return jax.device_put(
        state.replace(
            stage=state.stage + 1,
            stage_step=jnp.zeros((), jnp.int32),
            opt_state=make_optimizer(cfg).init(_trainable(state)),  # reset: see module doc
        ),
        state_shardings(cfg, run.mesh),
    )


def _log_progress(run: _Run, state: TrainState, stage: smrl.Stage, metrics: dict) -> None:
    """One line per log step (losses, steps/s, ETA) and the same scalars to the writers."""
    cfg, step, t = run.cfg, int(state.step), stage.index
    total = run.n_stages
    remaining = (
        (total - t) * cfg.train.steps_per_stage + cfg.train.steps_per_stage - int(state.stage_step)
    )
    rate = (step - run.step_start) / max(time.perf_counter() - run.t_start, 1e-9)
    m = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if run.writer:
        run.writer.write(step, {f"train/{k}": v for k, v in m.items()} | {"stage": t})
    if run.verbose:
        print(
            f"stage {t}/{total} ({stage.d_prev}->{stage.d_next}) "
            f"step {int(state.stage_step)}/{cfg.train.steps_per_stage} | "
            + " ".join(f"{k} {v:.4f}" for k, v in m.items())
            + f" | {rate:.1f} steps/s | ETA {_fmt_eta(remaining / max(rate, 1e-9))}",
            flush=True,
        )


def _validate(run: _Run, state: TrainState, best: dict, stage: smrl.Stage, final=False):
    """Validation nDCG@10 at d_t with the inference selection; updates the early-stopping
    record. Returns (stop?, best)."""
    cfg = run.cfg
    cols = _stage_selection(state, stage, run.sizes, cfg.ads.enabled)
    score = _val_ndcg(
        run.data, state.params, cols, run.val_q, cfg.train.split, run.eval_mesh, run.corpus
    )
    if score > float(best["score"]):
        best = _snapshot(state, run.replicated, score)
    else:
        best = dict(
            best, bad_evals=jax.device_put(np.int32(int(best["bad_evals"]) + 1), run.replicated)
        )
    run.history.append(
        {
            "step": int(state.step),
            "stage": stage.index,
            "size": stage.d_next,
            "val_ndcg@10": score,
            "best": float(best["score"]),
        }
    )
    if run.writer:
        run.writer.write(int(state.step), {"val/ndcg@10": score, "stage": stage.index})
    stop = (not final) and int(best["bad_evals"]) >= cfg.train.patience
    if stop:
        log.info(
            "stage %d: early stop at step %d (best val nDCG@10 %.4f)",
            stage.index,
            int(state.stage_step),
            float(best["score"]),
        )
    return stop, best


def _init_stage_logits(state, stage, corpus, scale, sharding) -> TrainState:
    """Stage logits from the output variance of each kept dim on the corpus (standardised
    log-variance x scale): selection starts from the dims that carry the most signal and
    ADS learns from there. Deterministic, so a resumed run recomputes the same values."""
    y = model.apply_numpy(jax.device_get(state.params), corpus[:4096])[:, stage.kept]
    lv = np.log(y.var(axis=0) + 1e-12)
    z = scale * (lv - lv.mean()) / (lv.std() + 1e-12)
    logits = dict(state.ads, **{ads.stage_name(stage.index): jnp.asarray(z, jnp.float32)})
    return jax.device_put(state.replace(ads=logits), sharding)


def _snapshot(state: TrainState, sharding: NamedSharding, score: float = -1.0) -> dict:
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


def _check_finite(state: TrainState, ckpt: Checkpointer | None) -> None:
    bad = int(state.first_bad_step)
    if bad >= 0:
        last = ckpt.latest_step() if ckpt else None
        raise NonFiniteLoss(
            f"non-finite loss at step {bad} (stage {int(state.stage)}); stopped without saving: "
            f"the last good checkpoint (step {last}) is kept. Lower --config.train.lr or "
            "--config.train.score_scale and rerun"
        )


class _MetricWriter:
    """metrics.jsonl plus TensorBoard event files (tensorboardX: no TensorFlow needed)."""

    def __init__(self, workdir):
        from tensorboardX import SummaryWriter

        self._path = Path(workdir) / "metrics.jsonl"
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

    def write(self, step: int, scalars: dict) -> None:
        with open(self._path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")
        for k, v in scalars.items():
            if k != "stage":
                self._tb.add_scalar(k.replace("@", "_"), v, step)  # TensorBoard tag charset

    def close(self) -> None:
        self._tb.close()
