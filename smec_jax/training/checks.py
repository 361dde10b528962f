"""Config checks that run before anything compiles or is written: one clear line per problem.

:func:`validate_config` checks the type and range of every field of ``configs/default.py``
(every command calls it first); :func:`validate_trainer_config` adds what depends on the
data and the devices. A refusal names the field, the value and what to do.

The table of checks, :func:`schema`, is derived from the defaults, so it cannot miss a
field: each field gets its rule from :data:`RULES` (shared fields) or from the block a
method family declares with :func:`declare_block`, and any field without one gets the type
of its default value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import jax

from smec_jax.core import codes, model, smrl
from smec_jax.datasets import pseudo_queries, sources
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation.evaluator import TIES
from smec_jax.training.batches import UNLABELLED
from smec_jax.training.objective import QUANTIZERS
from smec_jax.training.splits import STRATEGIES
from smec_jax.training.state import LR_DECAYS

SCHEDULES = ("sequential", "joint")
JOINT_BUDGETS = ("stage", "ladder")
NEIGHBOUR_MODES = ("auto", "gather", "memory", "list")
ADS_INITS = ("zeros", "variance")
MODEL_INITS = ("identity", "pca")


def integer(lo: int = 0) -> Callable:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            return f"must be an integer, got {v!r}"
        if v < lo:
            return f"must be >= {lo}, got {v}"
        return None

    return check


def real(lo: float = 0.0, *, strict: bool = False, hi: float | None = None) -> Callable:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return f"must be a number, got {v!r}"
        if not math.isfinite(v):
            return f"must be finite, got {v}"
        if v < lo or (strict and v == lo):
            return f"must be {'>' if strict else '>='} {lo}, got {v}"
        if hi is not None and v >= hi:
            return f"must be < {hi}, got {v}"
        return None

    return check


def boolean(v):
    return None if isinstance(v, bool) else f"must be True or False, got {v!r}"


def text(v):
    return None if isinstance(v, str) and v else f"must be a non-empty string, got {v!r}"


def one_of(options) -> Callable:
    return lambda v: None if v in options else f"is {v!r}; use one of {', '.join(options)}"


def method_names(v):
    ok = isinstance(v, tuple | list) and all(isinstance(x, str) and x for x in v)
    return None if ok else f"must be a tuple of method names, got {v!r}"


def ladder_sizes(v):
    if not isinstance(v, tuple | list) or not v:
        return f"must be a non-empty tuple of sizes such as (384, 128, 32), got {v!r}"
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in v):
        return f"{tuple(v)} must hold positive integers"
    if any(b >= a for a, b in zip(v, v[1:], strict=False)):
        return f"{tuple(v)} must be strictly decreasing"
    return None


# Range and choice rules of the shared fields of configs/default.py (see schema()).
RULES: dict[str, Callable] = {
    "seed": integer(0),
    "method": text,
    "ladder": ladder_sizes,
    "distributed": boolean,
    "data.source": one_of(tuple(sources.SOURCES)),
    "data.root": lambda v: None if isinstance(v, str) else f"must be a path, got {v!r}",
    "data.dataset": text,
    "data.encoder": text,
    "data.tfds_dir": lambda v: None if isinstance(v, str) else f"must be a path, got {v!r}",
    "data.pseudo_queries": lambda v: None if isinstance(v, str) else f"must be a path, got {v!r}",
    "data.pseudo_rule": one_of((*pseudo_queries.RULES, pseudo_queries.DOCUMENTS)),
    "data.pseudo_cache": text,
    "data.encoder_model": lambda v: None if isinstance(v, str) else f"must be a path, got {v!r}",
    "data.synthetic.n_docs": integer(1),
    "data.synthetic.n_train": integer(0),
    "data.synthetic.n_test": integer(1),
    "data.synthetic.dim": integer(2),
    "data.synthetic.rank": integer(1),
    "data.synthetic.seed": integer(0),
    "model.kind": one_of(model.KINDS),
    "model.out_dim": integer(0),
    "model.hidden": integer(1),
    "model.init": one_of(MODEL_INITS),
    "model.asymmetric": boolean,
    "train.supervised": boolean,
    "train.schedule": one_of(SCHEDULES),
    "train.joint_budget": one_of(JOINT_BUDGETS),
    "train.split": text,
    "train.val_fraction": real(0.0, strict=True, hi=1.0),
    "train.val_split": one_of(STRATEGIES),
    "train.batch_queries": integer(1),
    "train.n_pos": integer(1),
    "train.n_hard": integer(0),
    "train.hard_pool": integer(0),
    "train.unsup_batch": integer(1),
    "train.lr": real(0.0),
    "train.lr_decay": one_of(LR_DECAYS),
    "train.ads_lr": real(0.0),
    "train.score_scale": real(0.0, strict=True),
    "train.full_weight": real(0.0),
    "train.keep_weight": real(0.0),
    "train.distill_weight": real(0.0),
    "train.distill_temperature": real(0.0, strict=True),
    "train.distill_source_weight": real(0.0, hi=1.0),
    "train.code_lr": real(0.0, strict=True),
    "train.distill_batch": integer(1),
    "train.distill_top": integer(1),
    "train.distill_random": integer(0),
    "train.unlabelled_queries": one_of(UNLABELLED),
    "train.log_share": real(0.0, hi=1.0),
    "train.quantize": one_of(QUANTIZERS),
    "train.val_precision": one_of(codes.PRECISIONS),
    "train.steps_per_stage": integer(1),
    "train.eval_every": integer(1),
    "train.patience": integer(1),
    "train.log_every": integer(1),
    "train.ckpt_every": integer(1),
    "train.steps_per_call": integer(1),
    "ads.enabled": boolean,
    "ads.tau_start": real(0.0, strict=True),
    "ads.tau_end": real(0.0, strict=True),
    "ads.init": one_of(ADS_INITS),
    "ads.init_scale": real(0.0),
    "memory.enabled": boolean,
    "memory.size": integer(1),
    "memory.k": integer(1),
    "memory.alpha": real(0.0),
    "memory.sharded": boolean,
    "memory.neighbour_mode": one_of(NEIGHBOUR_MODES),
    "memory.list_size": integer(1),
    "mesh.num_devices": integer(0),
    "auto.budget_bytes": integer(0),
    "eval.split": text,
    "eval.methods": method_names,
    "eval.exclude_self": boolean,
    "eval.verdict_size": integer(1),
    "eval.ties": one_of(TIES),
}


# The config blocks method families declare in their own files: name -> (defaults, rules).
BLOCKS: dict[str, tuple[Callable, dict[str, Callable]]] = {}


def declare_block(name: str, defaults: Callable, rules: dict[str, Callable]) -> None:
    """A method family's own config block ``config.<name>``: ``defaults()`` builds it (a
    ConfigDict), ``rules`` holds its fields' range and choice checks (``"<name>.<field>"``)."""
    stray = [f for f in rules if not f.startswith(name + ".")]
    if stray:
        raise ValueError(f"config block {name}: rules for fields outside it: {stray}")
    BLOCKS[name] = (defaults, rules)


def config_blocks() -> dict[str, Callable]:
    """name -> defaults() of every declared block (``configs/default.py`` adds them)."""
    return {name: defaults for name, (defaults, _) in BLOCKS.items()}


def fields(cfg, prefix: str = "") -> dict[str, object]:
    """Every leaf field of ``cfg`` as ``{"a.b.c": value}``, in declaration order."""
    out = {}
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if hasattr(value, "items"):
            out.update(fields(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _like(default) -> Callable:
    """The check of a field with no rule: the type of its default value."""
    if isinstance(default, bool):
        return boolean
    if isinstance(default, numbers.Integral):
        return integer(-math.inf)
    if isinstance(default, numbers.Real):
        return real(-math.inf)
    if isinstance(default, str):
        return lambda v: None if isinstance(v, str) else f"must be a string, got {v!r}"
    if isinstance(default, tuple | list):
        return lambda v: None if isinstance(v, tuple | list) else f"must be a tuple, got {v!r}"
    return lambda v: None


def schema() -> dict[str, Callable]:
    """Every field of ``configs/default.py`` with its check, derived from the defaults: the
    rule of :data:`RULES` or of the field's block where there is one, else its default's type."""
    from configs import default  # the defaults; importing them declares every block

    rules = dict(RULES)
    for _, block_rules in BLOCKS.values():
        rules.update(block_rules)
    return {f: rules.get(f) or _like(v) for f, v in fields(default.get_config()).items()}


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if part not in node:
            raise ValueError(
                f"config field {dotted} is missing: derive the config from configs/default.py"
            )
        node = node[part]
    return node


def validate_config(cfg) -> None:
    """Type and range of every field (see :func:`schema`); ValueError naming the first bad one.
    A field missing from ``cfg`` is an error too: configs derive from default.py, so one
    missing means a file from another version."""
    for dotted, check in schema().items():
        problem = check(_get(cfg, dotted))
        if problem:
            raise ValueError(f"--config.{dotted} {problem}")
    if cfg.train.hard_pool < cfg.train.n_hard:
        raise ValueError(
            f"--config.train.hard_pool ({cfg.train.hard_pool}) must be >= train.n_hard "
            f"({cfg.train.n_hard}): hard negatives are drawn from that pool"
        )
    if cfg.train.log_share and cfg.train.unlabelled_queries != "train+pseudo":
        raise ValueError(
            f"--config.train.log_share {cfg.train.log_share} only applies to "
            f"train.unlabelled_queries=train+pseudo, not {cfg.train.unlabelled_queries!r}"
        )
    if cfg.mesh.num_devices and cfg.mesh.num_devices > jax.device_count():
        raise ValueError(
            f"--config.mesh.num_devices {cfg.mesh.num_devices}: only {jax.device_count()} "
            "devices are visible (0 = all)"
        )


def validate_trainer_config(cfg, data: RetrievalData, n_devices: int) -> tuple[int, ...]:
    """Checks the trainer's fields against the data and device count; returns the size chain
    (N, d_1, ..., d_T). Raises ValueError with one line naming the field and the fix."""
    validate_config(cfg)
    if cfg.model.kind == "residual_mlp" and cfg.model.out_dim not in (0, data.dim):
        raise ValueError(
            f"--config.model.out_dim {cfg.model.out_dim}: a residual_mlp maps {data.dim} -> "
            f"{data.dim} dims; use 0"
        )
    if cfg.model.asymmetric and cfg.model.kind != "linear":
        raise ValueError("--config.model.asymmetric needs --config.model.kind=linear")
    out_dim = cfg.model.out_dim or data.dim
    sizes = smrl.sizes_for(cfg.ladder, out_dim)
    if len(sizes) < 2:
        raise ValueError(
            f"ladder {tuple(cfg.ladder)} has no size below {out_dim}: nothing to train"
        )
    if cfg.memory.enabled and cfg.memory.size < cfg.memory.k:
        raise ValueError(f"memory.size {cfg.memory.size} is smaller than memory.k {cfg.memory.k}")
    if cfg.memory.enabled and cfg.memory.neighbour_mode == "list":
        if cfg.memory.sharded:
            raise ValueError(
                "--config.memory.neighbour_mode=list works on a replicated memory; drop "
                "--config.memory.sharded or use another neighbour_mode"
            )
        if cfg.memory.list_size < cfg.memory.k:
            raise ValueError(
                f"--config.memory.list_size {cfg.memory.list_size} must be >= memory.k "
                f"{cfg.memory.k}"
            )
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
    for field in ("distill_batch", "distill_random"):
        if cfg.train.distill_weight and cfg.train[field] % n_devices:
            raise ValueError(
                f"--config.train.{field} {cfg.train[field]} is not divisible by the "
                f"{n_devices} devices; change it or --config.mesh.num_devices"
            )
    if cfg.train.distill_weight and cfg.train.distill_source_weight:
        if "pseudo" not in cfg.train.unlabelled_queries:
            raise ValueError(
                "--config.train.distill_source_weight needs pseudo-queries (their source "
                "documents); set --config.train.unlabelled_queries=pseudo or train+pseudo"
            )
        if cfg.data.pseudo_rule == pseudo_queries.DOCUMENTS:
            raise ValueError(
                "--config.train.distill_source_weight moves teacher mass onto each "
                "pseudo-query's source document, which the pseudo-query rule `documents` "
                "leaves out; use one"
            )
    if cfg.train.distill_weight and cfg.train.distill_top > len(data.corpus_ids):
        raise ValueError(
            f"--config.train.distill_top {cfg.train.distill_top} exceeds the corpus' "
            f"{len(data.corpus_ids)} docs; lower it"
        )
    if cfg.train.supervised:
        data.qrels_for(cfg.train.split)  # a missing split fails here, with the splits listed
    return sizes
