"""SMEC training: a pure train step compiled once per SMRL stage, and the loop over stages.

Read top to bottom:
  1. make_train_step — the stage's objective (:mod:`smec_jax.training.objective`) differentiated,
                       Adam, a post-optimizer mask that keeps frozen columns and other
                       stages' logits bit-identical, enqueue into the S-XBM memory; jitted
                       over the device mesh with the stage's sizes and masks static
                       (make_block_step: ``train.steps_per_call`` of them in one dispatch).
  2. train           — mesh, input, state (fresh or restored), then for each stage:
                       compile, loop (log, validate, early-stop, checkpoint, NaN guard),
                       keep the stage's best params and fix its selection; returns the
                       nested compressor and its validation scores.

The trainer reads trainer fields only (``train``, ``model``, ``ads``, ``memory``,
``adaptor``, ``mesh``, ``eval``): a method (:mod:`smec_jax.methods`) is a set of those
fields, applied to a copy of the config before it gets here. The state, the optimizer and
the stage boundary (optimizer reset) are in :mod:`smec_jax.training.state`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from smec_jax import interrupts, parallel
from smec_jax.checkpoint import Checkpointer
from smec_jax.core import ads, memory, model, smrl
from smec_jax.core.export import NestedCompressor
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.progress import fmt_duration
from smec_jax.training import batches as batching
from smec_jax.training import checks, objective, run_record
from smec_jax.training.state import (
    TrainState,
    create_train_state,
    init_stage_logits,
    lr_factor,
    make_optimizer,
    next_stage,
    snapshot,
    state_shardings,
    trainable,
)

log = logging.getLogger(__name__)

# ============================================================================ 1. the step


def make_step_fn(stage: smrl.Stage, cfg, out_dim: int, mesh, lists=None) -> Callable:
    """The pure ``(state, batch) -> (state, metrics)`` of one stage (sizes, masks static);
    ``lists``: the neighbour lists of ``memory.neighbour_mode = "list"``."""
    name = ads.stage_name(stage.index)
    trainable_n = stage.trainable(out_dim)
    loss_fn = objective.make_loss_fn(stage, cfg, out_dim, mesh, lists)
    opt = make_optimizer(cfg)

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        tree = trainable(state)
        (loss, (metrics, x, ids, keep)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            tree, state, batch, rng
        )
        updates, opt_state = opt.update(grads, state.opt_state, tree)
        # Nothing outside this stage's trainable columns and logits may move.
        umask = {
            "params": model.column_update_mask(tree["params"], trainable_n),
            "ads": {k: jnp.float32(k == name) for k in tree["ads"]},
        }
        if cfg.train.lr_decay != "constant":  # Adam on the decayed rate (state.lr_factor)
            decay = lr_factor(cfg.train.lr_decay, state.stage_step, cfg.train.steps_per_stage)
            umask["params"] = jax.tree.map(lambda mk: mk * decay, umask["params"])
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

    return step


def _traced_once(fn: Callable, what: str) -> Callable:
    """``fn``, raising if traced twice (like chex.assert_max_traces(n=1), per wrapper)."""
    traces = 0

    def wrapped(*args):
        nonlocal traces
        traces += 1
        if traces > 1:
            raise AssertionError(f"{what} traced twice (batch shapes changed?)")
        return fn(*args)

    return wrapped


def make_train_step(stage: smrl.Stage, cfg, out_dim: int, mesh, lists=None) -> Callable:
    """The jitted ``(state, batch) -> (state, metrics)`` of one stage: :func:`make_step_fn`
    over the device mesh, the state donated."""
    step = _traced_once(
        make_step_fn(stage, cfg, out_dim, mesh, lists), f"stage {stage.index}: step"
    )
    replicated = NamedSharding(mesh, P())
    return jax.jit(step, donate_argnums=0, out_shardings=(state_shardings(cfg, mesh), replicated))


def make_block_step(stage: smrl.Stage, cfg, out_dim: int, mesh, lists=None) -> Callable:
    """The jitted ``(state, batches) -> (state, metrics)`` of ``train.steps_per_call``
    steps in one dispatch: a ``lax.scan`` of :func:`make_step_fn` over batches stacked on
    a leading axis; the metrics are the last step's. The same steps as one call each:
    on accelerators it takes the per-step launch overhead off the critical path."""
    step = make_step_fn(stage, cfg, out_dim, mesh, lists)

    def block(state, batches):
        state, metrics = jax.lax.scan(step, state, batches)
        return state, jax.tree.map(lambda m: m[-1], metrics)

    block = _traced_once(block, f"stage {stage.index}: block of steps")
    replicated = NamedSharding(mesh, P())
    return jax.jit(block, donate_argnums=0, out_shardings=(state_shardings(cfg, mesh), replicated))


def make_stacker(mesh) -> Callable:
    """The jitted ``(*batches) -> batches``: placed batches stacked on a new leading (step)
    axis, still sharded over the data axis (built once per stage, compiled once)."""
    sharding = NamedSharding(mesh, P(None, parallel.DATA))
    return jax.jit(lambda *bs: jax.tree.map(lambda *xs: jnp.stack(xs), *bs), out_shardings=sharding)


def block_length(cfg, step: int, stage_step: int, validating: bool) -> int:
    """How many steps the loop may run in one dispatch from here: ``steps_per_call`` when
    no log, checkpoint or validation step and no stage end falls inside the block, else 1,
    so every boundary is seen exactly as with one step per call (and a resumed run, which
    starts at a checkpoint step, makes the same blocks)."""
    t = cfg.train
    n = t.steps_per_call
    if n <= 1 or stage_step + n > t.steps_per_stage:
        return 1
    for j in range(1, n):
        if (step + j) % t.log_every == 0 or (step + j) % t.ckpt_every == 0:
            return 1
        if validating and (stage_step + j) % t.eval_every == 0:
            return 1
    return n


# ============================================================================ 2. the loop


@dataclasses.dataclass
class TrainResult:
    compressor: NestedCompressor
    sets: list[np.ndarray]  # S_0 .. S_T
    val_history: list[dict]
    val_ndcg: dict[str, float]  # validation nDCG@10 of the final compressor per size


class NonFiniteLoss(FloatingPointError):
    pass


@dataclasses.dataclass
class _Run:
    """What every stage of one training run shares (host side)."""

    cfg: Any
    data: RetrievalData
    sizes: tuple[int, ...]
    n_stages: int
    mesh: Any
    batches: Any
    lists: Any
    val_q: list[str]
    evaluator: Evaluator | None  # validation, on this process's devices (every host alike)
    ckpt: Checkpointer | None
    writer: _MetricWriter | None
    verbose: bool
    on_step: Callable[[int], None] | None
    history: list[dict] = dataclasses.field(default_factory=list)
    t_start: float = 0.0
    step_start: int = 0
    term: Any = None  # interrupts.on_sigterm's flag

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())


def train(
    cfg,
    data: RetrievalData,
    workdir: str | Path | None = None,
    *,
    verbose: bool = True,
    on_step: Callable[[int], None] | None = None,
    init_params: dict | None = None,
) -> TrainResult:
    """Trains the nested compressor the config's trainer fields describe; resumes from
    ``workdir``.

    Args:
      cfg: the config (see configs/default.py), with the method's fields already applied
        (``smec_jax.methods``); ``train.supervised = False`` trains label-free.
      data: the embedded dataset (training uses ``train.split``; validation is carved from
        it; test qrels are never read here).
      workdir: checkpoints, metrics.jsonl and TensorBoard events go here; None = no files.
      verbose: print a progress line (losses, steps/s, ETA) every ``log_every`` steps (on
        process 0 only).
      on_step: called with the global step after each step (tests use it to interrupt).
      init_params: start from these params (unpermuted, the model's kind and shapes) instead
        of ``model.init``; a checkpoint in ``workdir`` still takes precedence.
    """
    # -- mesh and sizes (fail before compiling anything)
    n_dev = cfg.mesh.num_devices or jax.device_count()
    sizes = checks.validate_trainer_config(cfg, data, n_dev)
    n_stages = 1 if cfg.train.schedule == "joint" else len(sizes) - 1
    if cfg.train.schedule == "joint" and cfg.train.joint_budget == "ladder":
        cfg = cfg.copy_and_resolve_references()  # one stage as long as the ladder's stages
        cfg.train.steps_per_stage *= len(sizes) - 1
    mesh = parallel.data_mesh(n_dev)
    # only the same run resumes: same settings, same data (checked before any work)
    record = run_record.record(cfg, data) if workdir else None
    ckpt_dir = Path(workdir) / "checkpoints" if workdir else None
    # an existing folder only: a Checkpointer creates its folder, and nothing is written
    # before the input is checked
    ckpt = Checkpointer(ckpt_dir) if ckpt_dir and ckpt_dir.is_dir() else None
    resuming = ckpt is not None and ckpt.latest_step() is not None
    if resuming:
        run_record.check(workdir, record)

    # -- input: batches indexed by global step; validation carved from the train split
    if cfg.train.supervised:
        train_q, val_q, batches = batching.supervised_input(cfg, data)
    else:  # label-free: no qrels at all, so no validation either (fixed steps per stage)
        batches = batching.unsupervised_batches(
            data, batch_size=cfg.train.unsup_batch, seed=cfg.seed
        )
        train_q, val_q = None, []
    if cfg.train.distill_weight:  # unlabelled queries: never the validation ones
        batches = batching.Merged(batches, batching.distill_input(cfg, data, train_q))
    evaluator = None
    if val_q:
        evaluator = Evaluator.from_config(
            data, cfg.eval, split=cfg.train.split, mesh=parallel.local_mesh()
        )

    # -- S-XBM neighbour lists (list mode): every id's nearest ids, computed once; ids are
    # corpus rows, then n_docs + query rows, as the batches number them
    lists, n_ids = None, 1
    if cfg.memory.enabled and cfg.memory.neighbour_mode == "list":
        table = jnp.asarray(np.concatenate([data.corpus, data.queries]))
        lists = memory.neighbour_lists(table, cfg.memory.list_size)
        n_ids = table.shape[0]

    # -- state: fresh, or the latest checkpoint of this workdir
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(
        create_train_state(cfg, data.dim, sizes[0], sizes, data.corpus, n_ids, init_params),
        state_shardings(cfg, mesh),
    )
    best = snapshot(state, replicated)
    if workdir and ckpt is None:
        ckpt = Checkpointer(ckpt_dir)
    if ckpt and not resuming and jax.process_index() == 0:
        run_record.write(workdir, record)  # a fresh run: what a resume must match
    if resuming:
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
        batches=batches,
        lists=lists,
        val_q=val_q,
        evaluator=evaluator,
        ckpt=ckpt,
        writer=_MetricWriter(workdir) if workdir and jax.process_index() == 0 else None,
        verbose=verbose and jax.process_index() == 0,
        on_step=on_step,
        t_start=time.perf_counter(),
        step_start=int(state.step),
    )

    # -- stages: each compiles its own step; a resumed run starts in its unfinished stage;
    # a SIGTERM (preemption) saves and stops between dispatches
    with interrupts.on_sigterm() as run.term:
        try:
            while int(state.stage) <= n_stages:
                state = _run_stage(run, state, best)
                best = snapshot(state, replicated)
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
    val_ndcg = {str(d): evaluator.mean_ndcg(comp, d, val_q) for d in sizes} if evaluator else {}
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
        state = init_stage_logits(
            state, stage, run.data.corpus, cfg.ads.init_scale, state_shardings(cfg, run.mesh)
        )
    step_fn = make_train_step(stage, cfg, run.sizes[0], run.mesh, run.lists)
    block_fn = stack = None
    if cfg.train.steps_per_call > 1:
        block_fn = make_block_step(stage, cfg, run.sizes[0], run.mesh, run.lists)
        stack = make_stacker(run.mesh)
    # Host-side counters mirror the state's, so the loop never waits on the device except at
    # log, validation and checkpoint steps; batches are built and placed ahead by a thread.
    step, stage_step = int(state.step), int(state.stage_step)
    batch_sharding = NamedSharding(run.mesh, P(parallel.DATA))
    feed = batching.Prefetcher(run.batches, step, lambda b: parallel.put_batch(b, batch_sharding))
    stopped = False
    try:
        while stage_step < cfg.train.steps_per_stage:
            if stage_step % cfg.train.eval_every == 0 and run.val_q:
                stopped, best = _validate(run, state, best, stage)
                if stopped:
                    break
            n = block_length(cfg, step, stage_step, bool(run.val_q))
            if n == 1:
                state, metrics = step_fn(state, feed.next())
            else:
                state, metrics = block_fn(state, stack(*[feed.next() for _ in range(n)]))
            step, stage_step = step + n, stage_step + n
            if step % cfg.train.log_every == 0 or stage_step == cfg.train.steps_per_stage:
                _check_finite(state, run.ckpt)
                _log_progress(run, state, stage, metrics)
            if run.ckpt and step % cfg.train.ckpt_every == 0:
                _check_finite(state, run.ckpt)
                run.ckpt.save(step, {"state": state, "best": best})
            if run.on_step:
                for done in range(step - n + 1, step + 1):
                    run.on_step(done)
            interrupts.point("train-step", step)
            if run.term is not None and run.term.requested:
                _preempt(run, state, best, step)
    finally:
        feed.close()
    # Final validation, then keep the best params of the stage and fix S_t.
    if run.val_q:
        if not stopped:
            best = _validate(run, state, best, stage, final=True)[1]
        state = state.replace(params=best["params"], ads=best["ads"])
    return next_stage(state, cfg, run.mesh)


def _preempt(run: _Run, state: TrainState, best: dict, step: int) -> None:
    """Saves the state at ``step`` (with a workdir) and raises :class:`interrupts.Preempted`."""
    if run.ckpt is None:
        raise interrupts.Preempted(f"SIGTERM at step {step}; nothing saved (no workdir)")
    _check_finite(state, run.ckpt)
    run.ckpt.save(step, {"state": state, "best": best})
    raise interrupts.Preempted(
        f"SIGTERM at step {step}: saved a checkpoint of step {step} in {run.ckpt.directory}; "
        "rerun the same command to resume"
    )


def _stage_selection(state: TrainState, stage: smrl.Stage, sizes, ads_enabled: bool) -> np.ndarray:
    """The output dims of size d_t as inference would pick them now (S_t); for the joint
    schedule, those of the smallest size."""
    if not ads_enabled:  # prefixes of the kept dims
        return stage.kept[: stage.d_next]
    logits = jax.tree.map(np.asarray, state.ads)
    if stage.also:  # joint schedule with ADS: the top d_T of the one logit vector
        return smrl.kept_sets(sizes, logits, len(sizes) - 1, joint=True)[-1]
    return smrl.kept_sets(sizes, logits, stage.index)[stage.index]


def _validate(run: _Run, state: TrainState, best: dict, stage: smrl.Stage, final=False):
    """Validation nDCG@10 at d_t with the inference selection; updates the early-stopping
    record. Returns (stop?, best)."""
    cfg = run.cfg
    cols = _stage_selection(state, stage, run.sizes, cfg.ads.enabled)
    # Host copies: validation runs the same on every process, on its local devices.
    comp = NestedCompressor(
        params=jax.device_get(state.params), order=np.asarray(cols), sizes=(len(cols),)
    )
    score = run.evaluator.mean_ndcg(comp, len(cols), run.val_q, cfg.train.val_precision)
    if score > float(best["score"]):
        best = snapshot(state, run.replicated, score)
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
            + f" | {rate:.1f} steps/s | ETA {fmt_duration(remaining / max(rate, 1e-9))}",
            flush=True,
        )


def _check_finite(state: TrainState, ckpt: Checkpointer | None) -> None:
    bad = int(state.first_bad_step)
    if bad >= 0:
        last = ckpt.latest_step() if ckpt else None
        raise NonFiniteLoss(
            f"non-finite loss at step {bad} (stage {int(state.stage)}); stopped without saving: "
            f"the last good checkpoint (step {last}) is kept. Lower --config.train.lr or "
            "--config.train.score_scale and rerun"
        )


def _summary_writer():
    """tensorboardX's ``SummaryWriter``, imported without torch: tensorboardX imports torch
    (about 1 s, every training process) only to accept torch tensors, and it writes our
    Python floats the same way without it."""
    import sys

    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # `import torch` raises ImportError, which it tolerates
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter


class _MetricWriter:
    """metrics.jsonl plus TensorBoard event files (tensorboardX: no TensorFlow needed)."""

    def __init__(self, workdir):
        SummaryWriter = _summary_writer()

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
