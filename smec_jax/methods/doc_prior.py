"""The doc_prior control: no compression, only a bonus for documents judged in training.

What it gains over truncation at full size is what remembering training documents alone
is worth (DESIGN.md section 3); a supervised compressor's lead on *all* test queries must
be read against it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from smec_jax.core.compressor import Compressor
from smec_jax.core.retrieval import l2_normalize
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.methods.registry import Fitted, Method, register
from smec_jax.training import splits

BETAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)


@dataclasses.dataclass(frozen=True)
class DocPrior(Compressor):
    """The original embedding at every size, plus a score bonus ``beta`` for every document
    judged relevant for a training query.

    Attributes:
      bias: (n_docs,) bonus per corpus row. beta: the validated bonus.
    """

    bias: np.ndarray
    beta: float

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        del dim  # no compression: the point is to measure memorisation alone
        return l2_normalize(jnp.asarray(x, jnp.float32))

    def doc_bias(self) -> np.ndarray:
        return self.bias


def judged_bias(data: RetrievalData, split: str, qids: Sequence[str]) -> np.ndarray:
    """(n_docs,) 1 for every document judged relevant for one of ``qids``, else 0."""
    row = {d: i for i, d in enumerate(data.corpus_ids)}
    qrels = data.qrels_for(split)
    marked = np.zeros((len(data.corpus_ids),), np.float32)
    for q in qids:
        for d, g in qrels[q].items():
            if g > 0:
                marked[row[d]] = 1.0
    return marked


def fit_doc_prior(cfg, data: RetrievalData, workdir=None, **_) -> Fitted:
    """Chooses beta on a *random* validation split of the training queries (remembering only
    helps queries that share documents with training, so an unseen-style split would always
    choose 0), then marks the documents judged relevant for all training queries."""
    del workdir
    split = cfg.train.split
    vs = splits.split_train_val(data, split, cfg.train.val_fraction, cfg.seed, "random")
    train_q, val_q = vs.train, vs.val
    marked = judged_bias(data, split, train_q)
    evaluator = Evaluator.from_config(data, cfg.eval, split=split)
    scores = {}
    for beta in BETAS:
        scores[beta] = evaluator.mean_ndcg(DocPrior(bias=beta * marked, beta=beta), data.dim, val_q)
    beta = max(BETAS, key=lambda b: (scores[b], -b))
    bias = beta * judged_bias(data, split, data.judged_queries(split))
    return Fitted(DocPrior(bias=bias, beta=beta), {str(data.dim): scores[beta]})


register(
    Method("doc_prior", "control", False, fit_doc_prior, doc="original + bonus for train docs")
)
