"""SMEC, its label-free form, and the paper's ablations: one trainer, different fields.

Every entry is an explicit set of dotted config overrides, applied once to a copy of the
config; the trainer (:func:`smec_jax.training.train.train`) then runs that config as it is.

* ``smec``: SMRL stages + ADS + S-XBM + the rank loss (the defaults).
* ``smec_unsup``: the same stages on corpus embeddings alone (S-XBM loss, no qrels, no
  validation), for users without judgments.
* ``smec_distill``, ``smec_unsup_distill``, ``distill``: the listwise distillation of the
  full-size ranking on unlabelled queries (``train.distill_weight``) added to SMEC, added
  to label-free SMEC, and alone.
* ``distill_pseudo``: label-free and query-log-free: every size at once (nested
  prefixes), an asymmetric map (queries have their own), fitted by distillation alone on
  pseudo-queries made from the corpus's titles and sentences (:mod:`smec_jax.datasets.pseudo_queries`);
  one stage as long as SMEC's four. ``distill_pseudo_log`` adds a query log: the training
  queries, their judgments unread, as half of the distillation queries. ``smec_pseudo`` adds the same asymmetric map and
  distillation to SMEC: labels where they exist, the served corpus's geometry besides.
  ``distill_pseudo_codes``: ``distill_pseudo``, then free codes for the served corpus
  (:mod:`smec_jax.training.doc_codes`) fitted by the same distillation, the query map fixed.
  ``distill_docs``: ``distill_pseudo`` where no encoder is at hand to embed texts: the
  corpus documents are the queries, each without itself (its codes, fitted the same way
  with ``--config.data.pseudo_rule=documents``, ranked worse on validation: not registered).
* Ablations (the paper's table): ``mrl`` trains every size at once as prefixes;
  ``mrl_smrl`` trains them sequentially; ``mrl_ads`` at once on dims chosen by ADS (one
  logit vector over all N dims; each size takes its top d of the same noisy logits, so
  the sets nest); ``mrl_sxbm`` adds the memory loss to MRL.
"""

from __future__ import annotations

from smec_jax.core import smrl
from smec_jax.datasets import pseudo_queries
from smec_jax.methods import trainer
from smec_jax.methods.registry import Fitted, Method, apply_overrides, register
from smec_jax.methods.trainer import MRL
from smec_jax.training import batches, doc_codes

# SMEC and the methods built on its trainer, in registration order: the "SMEC variants"
# that the Pareto report sets against every other method on its axis (the baselines). The
# ablations below are not among them.
VARIANTS: list[str] = []


def register_trainer_method(name: str, group: str, overrides, doc: str):
    if group != "ablation":
        VARIANTS.append(name)
    return trainer.register_trainer_method(name, group, overrides, doc)


register_trainer_method("smec", "smec", {}, "SMRL + ADS + S-XBM + rank loss")
register_trainer_method(
    "smec_unsup", "label_free", {"train.supervised": False}, "SMEC stages, S-XBM loss only"
)
register_trainer_method(
    "smec_binary",
    "smec",
    {"train.quantize": "binary", "train.val_precision": "binary"},
    "SMEC trained on its binary codes (straight-through sign), validated on them",
)
for _bits in ("int8", "int2"):
    register_trainer_method(
        f"smec_{_bits}",
        "smec",
        {"train.quantize": _bits, "train.val_precision": _bits},
        f"SMEC trained on its {_bits} codes (straight-through), validated on them",
    )
# Distillation of the full-size ranking on unlabelled queries (objective.distill_term):
# added to SMEC, to label-free SMEC, and alone (label-free, no memory).
DISTILL = {"train.distill_weight": 1.0}
register_trainer_method(
    "smec_distill", "smec", DISTILL, "SMEC + listwise distillation on unlabelled queries"
)
register_trainer_method(
    "smec_unsup_distill",
    "label_free",
    {"train.supervised": False, **DISTILL},
    "label-free SMEC + listwise distillation on unlabelled queries",
)
register_trainer_method(
    "distill",
    "label_free",
    {"train.supervised": False, "memory.enabled": False, **DISTILL},
    "SMEC stages trained by listwise distillation alone (no labels, no memory)",
)
# Distillation on pseudo-queries: settings chosen on SciFact's training queries (scored as a
# validation set: this method never reads them), README "Without labels".
PSEUDO = {
    **DISTILL,
    "train.unlabelled_queries": "pseudo",
    "train.distill_batch": 128,
    "train.distill_top": 32,
    "train.distill_random": 512,
    "model.asymmetric": True,
}
DISTILL_PSEUDO = {**MRL, **PSEUDO, "train.supervised": False, "train.joint_budget": "ladder"}
register_trainer_method(
    "distill_pseudo",
    "label_free",
    DISTILL_PSEUDO,
    "every size at once, asymmetric, listwise distillation on pseudo-queries from the corpus",
)
# The same with no encoder at hand: the documents themselves are the queries, each one's
# own document left out (the pseudo-query rule `documents`; README "Without labels").
DISTILL_DOCS = {**DISTILL_PSEUDO, "data.pseudo_rule": pseudo_queries.DOCUMENTS}
register_trainer_method(
    "distill_docs",
    "label_free",
    DISTILL_DOCS,
    "distill_pseudo with the corpus documents as queries (no texts, no encoder)",
)
# The same, plus a query log: the training queries (judgments unread) repeated to half of
# the distillation queries; the share chosen on held-out halves of SciFact's training
# queries, README "Without labels".
register_trainer_method(
    "distill_pseudo_log",
    "label_free",
    {
        **MRL,
        **PSEUDO,
        "train.supervised": False,
        "train.joint_budget": "ladder",
        "train.unlabelled_queries": "train+pseudo",
        "train.log_share": 0.5,
    },
    "distill_pseudo plus a query log (the training queries, judgments unread)",
)


def _with_codes(overrides):
    """``fit`` of the trainer method ``overrides``, then free codes for the served corpus
    (:mod:`smec_jax.training.doc_codes`), fitted by the same distillation for as many steps as the
    map took, with the query map fixed."""
    map_fit = trainer.trainer_fit(overrides)

    def fit(cfg, data, workdir=None, *, verbose: bool = True) -> Fitted:
        fitted = map_fit(cfg, data, workdir, verbose=verbose)
        cfg = apply_overrides(cfg, overrides)
        data = pseudo_queries.attach_for(cfg, data)
        queries, _ = batches.unlabelled_queries(
            data, None, cfg.train.split, cfg.train.unlabelled_queries, cfg.train.log_share
        )
        t = cfg.train
        codes = doc_codes.fit(
            fitted.compressor,
            data,
            queries,
            steps=t.steps_per_stage * (len(smrl.sizes_for(cfg.ladder, data.dim)) - 1),
            lr=t.code_lr,
            batch=t.distill_batch,
            top=t.distill_top,
            n_random=t.distill_random,
            temperature=t.distill_temperature,
            seed=cfg.seed,
            self_rows=batches.own_rows(cfg, data, len(queries)),
            verbose=verbose,
        )
        return Fitted(codes, fitted.val_ndcg)

    return fit


VARIANTS.append("distill_pseudo_codes")
register(
    Method(
        "distill_pseudo_codes",
        "label_free",
        True,
        _with_codes(DISTILL_PSEUDO),
        DISTILL_PSEUDO,
        "distill_pseudo, then free codes for the served corpus by the same distillation",
    )
)
register_trainer_method(
    "smec_pseudo",
    "smec",
    PSEUDO,
    "SMEC (labels) + asymmetric map + listwise distillation on pseudo-queries from the corpus",
)
register_trainer_method("mrl", "ablation", MRL, "every size at once, prefixes")
register_trainer_method(
    "mrl_smrl", "ablation", {**MRL, "train.schedule": "sequential"}, "MRL + sequential stages"
)
register_trainer_method("mrl_ads", "ablation", {**MRL, "ads.enabled": True}, "MRL + ADS")
register_trainer_method("mrl_sxbm", "ablation", {**MRL, "memory.enabled": True}, "MRL + S-XBM")
