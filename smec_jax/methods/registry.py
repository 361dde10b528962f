"""The method interface and registry.

A method is a name, a group, whether it depends on a seed, and ``fit(cfg, data, workdir)
-> Fitted``. Methods that the trainer runs are also a dict of dotted config overrides
(``{"train.schedule": "joint", "ads.enabled": False}``), applied once to a copy of the
config by :meth:`Method.resolve`: the trainer never reads ``cfg.method``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation.evaluator import Compressor
from smec_jax.training import checks

# Report order: the free alternatives, the memorisation control, peer methods, SMEC, the
# label-free methods, then the ablations of SMEC.
GROUPS = ("baseline", "control", "peer", "smec", "label_free", "ablation")


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A fitted method: its compressor and its validation nDCG@10 per size ({} if it has no
    validation, e.g. closed-form or label-free methods)."""

    compressor: Compressor
    val_ndcg: dict[str, float] = dataclasses.field(default_factory=dict)


FitFn = Callable[..., Fitted]  # (cfg, data, workdir, *, verbose=True) -> Fitted


@dataclasses.dataclass(frozen=True)
class Method:
    """One registered method.

    Attributes:
      name: the ``--config.method`` / report row name.
      group: one of :data:`GROUPS`.
      seeded: whether results depend on ``cfg.seed`` (closed-form methods are fitted once).
      fit: ``(cfg, data, workdir, *, verbose=True) -> Fitted``; ``workdir`` (or None) holds
        whatever the method writes (checkpoints, metrics) and makes it resumable.
      overrides: dotted config fields the method sets (trainer methods).
      doc: one line for listings.
    """

    name: str
    group: str
    seeded: bool
    fit: FitFn
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    doc: str = ""

    def resolve(self, cfg):
        """A copy of ``cfg`` with this method's overrides applied (``cfg.method`` set too)."""
        out = apply_overrides(cfg, self.overrides)
        out.method = self.name
        return out

    def __call__(
        self, cfg, data: RetrievalData, workdir: str | Path | None = None, **kwargs
    ) -> Fitted:
        return self.fit(cfg, data, workdir, **kwargs)


def apply_overrides(cfg, overrides: Mapping[str, Any]):
    """A resolved copy of ``cfg`` with each dotted field set; an unknown field is an error."""
    out = cfg.copy_and_resolve_references()
    for dotted, value in overrides.items():
        *path, leaf = dotted.split(".")
        node = out
        for part in path:
            node = node[part]
        if leaf not in node:
            raise KeyError(f"override {dotted!r} names no config field")
        node[leaf] = value
    return out


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Adds a method; a second method of the same name is an error."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    if method.group not in GROUPS:
        raise ValueError(f"method {method.name!r}: group {method.group!r} not in {GROUPS}")
    _REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; use one of {', '.join(names())}")
    return _REGISTRY[name]


def validate(cfg) -> None:
    """Every config field's type and range, then the method names it holds (``method`` and
    ``eval.methods``): what every command checks before it reads data or writes a file."""
    checks.validate_config(cfg)
    if cfg.method != "auto":  # auto: chosen among registered methods (smec_jax.methods.auto)
        get(cfg.method)
    for name in cfg.eval.methods:
        if name not in _REGISTRY:
            raise ValueError(
                f"--config.eval.methods: unknown method {name!r}; use any of {', '.join(names())}"
            )


def names(group: str | None = None) -> list[str]:
    """Registered names in report order (by group, then registration order)."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; use one of {', '.join(GROUPS)}")
    ordered = sorted(_REGISTRY.values(), key=lambda m: GROUPS.index(m.group))
    return [m.name for m in ordered if group is None or m.group == group]
