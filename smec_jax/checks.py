"""Config checks that run before anything compiles or is written: one clear line per problem."""

from __future__ import annotations

from smec_jax import model, smrl
from smec_jax.data import RetrievalData

SCHEDULES = ("sequential", "joint")
NEIGHBOUR_MODES = ("auto", "gather", "memory")
ADS_INITS = ("zeros", "variance")
MODEL_INITS = ("identity", "pca")


def validate_trainer_config(cfg, data: RetrievalData, n_devices: int) -> tuple[int, ...]:
    """Checks the trainer's fields against the data and device count; returns the size chain
    (N, d_1, ..., d_T). Raises ValueError with one line naming the field and the fix."""
    if cfg.train.schedule not in SCHEDULES:
        raise ValueError(
            f"unknown train.schedule {cfg.train.schedule!r}; use one of {', '.join(SCHEDULES)}"
        )
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
    per_step = cfg.train.batch_queries if cfg.train.supervised else cfg.train.unsup_batch
    if per_step % n_devices:
        raise ValueError(
            f"batch of {per_step} is not divisible by the {n_devices} devices; change "
            "--config.train.batch_queries (or unsup_batch) or --config.mesh.num_devices"
        )
    for key in ("steps_per_stage", "eval_every", "log_every", "ckpt_every"):
        if int(cfg.train[key]) < 1:
            raise ValueError(f"train.{key} must be >= 1")
    return sizes
