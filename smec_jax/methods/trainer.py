"""Methods that are the trainer run on a config with some fields set (no registrations here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smec_jax.datasets import pseudo_queries
from smec_jax.methods.registry import Fitted, Method, apply_overrides, register
from smec_jax.training import train

# Matryoshka Representation Learning: every size at once, as prefixes, no ADS, no memory.
MRL = {"train.schedule": "joint", "ads.enabled": False, "memory.enabled": False}


def trainer_fit(overrides: Mapping[str, Any]):
    """``fit`` of a method that is :func:`smec_jax.training.train.train` on ``cfg`` + ``overrides``."""

    def fit(cfg, data, workdir=None, *, verbose: bool = True) -> Fitted:
        cfg = apply_overrides(cfg, overrides)
        if cfg.train.distill_weight:
            data = pseudo_queries.attach_for(cfg, data)
        res = train.train(cfg, data, workdir, verbose=verbose)
        return Fitted(res.compressor, res.val_ndcg)

    return fit


def register_trainer_method(name: str, group: str, overrides: Mapping[str, Any], doc: str):
    """Registers a seeded method that is the trainer with ``overrides``."""
    return register(Method(name, group, True, trainer_fit(overrides), dict(overrides), doc))
