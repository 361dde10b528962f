"""Matryoshka-Adaptor (Yoon et al. 2024) on the trainer's code path.

A residual MLP (y = x + MLP(x), starting at the identity) trained on every prefix size
jointly with in-batch similarity preservation (L_topk + L_pair + L_rec), plus the rank loss
when supervised; the label-free form drops the rank loss. One phase from the identity (the
paper's unsupervised-then-supervised schedule is not built).
"""

from __future__ import annotations

from smec_jax.methods.trainer import MRL, register_trainer_method

ADAPTOR = {
    **MRL,
    "model.kind": "residual_mlp",
    "model.init": "identity",
    "adaptor.enabled": True,
}

register_trainer_method(
    "matryoshka_adaptor", "peer", ADAPTOR, "residual MLP, joint prefixes, adaptor losses"
)
register_trainer_method(
    "matryoshka_adaptor_unsup",
    "label_free",
    {**ADAPTOR, "train.supervised": False},
    "Matryoshka-Adaptor without the rank loss",
)
