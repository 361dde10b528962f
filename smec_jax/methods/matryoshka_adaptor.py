"""Matryoshka-Adaptor (Yoon et al. 2024) on the trainer's code path.

A residual MLP (y = x + MLP(x), starting at the identity) trained on every prefix size
jointly with in-batch similarity preservation (L_topk + L_pair + L_rec), plus the rank loss
when supervised; the label-free form drops the rank loss.

* ``matryoshka_adaptor``: one phase from the identity, all losses at once.
* ``matryoshka_adaptor_2p``: the paper's schedule for the supervised setting: the
  label-free adaptor first (``workdir/unsup``), then the supervised one starting from its
  result (``workdir/sup``), each with the configured step budget. Both phases resume.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np

from smec_jax.methods.registry import Fitted, Method, apply_overrides, register
from smec_jax.methods.trainer import MRL, register_trainer_method
from smec_jax.training import checks, train


def config_block() -> ml_collections.ConfigDict:
    """``config.adaptor``: Matryoshka-Adaptor's losses (the objective adds them when
    ``enabled``; the methods below enable them)."""
    c = ml_collections.ConfigDict()
    c.enabled = False
    c.topk = 10
    c.topk_weight = 1.0
    c.pair_weight = 1.0
    c.rec_weight = 1.0
    return c


checks.declare_block(
    "adaptor",
    config_block,
    {
        "adaptor.topk": checks.integer(1),
        "adaptor.topk_weight": checks.real(0.0),
        "adaptor.pair_weight": checks.real(0.0),
        "adaptor.rec_weight": checks.real(0.0),
    },
)

ADAPTOR = {
    **MRL,
    "model.kind": "residual_mlp",
    "model.init": "identity",
    "adaptor.enabled": True,
}
UNSUP = {**ADAPTOR, "train.supervised": False}

register_trainer_method(
    "matryoshka_adaptor", "peer", ADAPTOR, "residual MLP, joint prefixes, adaptor losses"
)
register_trainer_method(
    "matryoshka_adaptor_unsup", "label_free", UNSUP, "Matryoshka-Adaptor without the rank loss"
)


def _two_phase(cfg, data, workdir=None, *, verbose: bool = True) -> Fitted:
    """The label-free adaptor, then the supervised one from its params."""
    sub = (lambda name: None) if workdir is None else (lambda name: Path(workdir) / name)
    first = train.train(apply_overrides(cfg, UNSUP), data, sub("unsup"), verbose=verbose)
    comp = first.compressor
    if not np.array_equal(comp.order, np.arange(len(comp.order))):
        raise AssertionError("the joint schedule without ADS keeps every output in place")
    second = train.train(
        apply_overrides(cfg, ADAPTOR),
        data,
        sub("sup"),
        verbose=verbose,
        init_params=comp.params,
    )
    return Fitted(second.compressor, second.val_ndcg)


register(
    Method(
        "matryoshka_adaptor_2p",
        "peer",
        True,
        _two_phase,
        ADAPTOR,
        "Matryoshka-Adaptor as in its paper: label-free phase, then supervised from it",
    )
)
