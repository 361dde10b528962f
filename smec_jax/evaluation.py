"""Scoring: one :class:`Evaluator` scores any compressor at any size on one split.

Every command that scores (train, evaluate, reproduce, analyze, validation during training)
goes through :class:`Evaluator`, so every option of ``config.eval`` reaches every score.
Exact cosine search over the whole corpus (chunked, sharded over ``mesh``), then nDCG@10,
Recall@100 and MRR@10 with trec_eval semantics (:mod:`smec_jax.metrics`).

A compressor is anything with ``compress(x, dim) -> (n, dim)`` unit vectors; one that also
has ``doc_bias() -> (n_docs,)`` (the doc_prior control) adds that bias to every score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from smec_jax import metrics, retrieval
from smec_jax.data import RetrievalData

METRICS = ("ndcg@10", "recall@100", "mrr@10")
TOP_K = 100
TIES = ("trec_eval", "row")
Results = dict[str, dict[str, dict[str, float]]]  # method -> size -> metric -> mean


class Compressor(Protocol):
    """A fitted compressor: original (n, D) embeddings -> (n, dim) unit vectors."""

    def compress(self, x: jax.Array, dim: int) -> jax.Array: ...


class Evaluator:
    """Scores compressors on the judged queries of one split of ``data``.

    Args:
      data: the embedded dataset.
      split: qrels split to score (its queries with at least one relevant judgment).
      exclude_self: drop a retrieved doc whose id equals the query id (ArguAna-style).
      mesh: shard the corpus over this mesh's data axis; None = the default device.
      ties: "trec_eval" (default): equal scores rank by document id, descending, as
        trec_eval (and so pytrec_eval, BEIR, MTEB) ranks them, in the top-k as well;
        "row": by corpus row.

    ``unseen`` queries (scored again under ``<metric>_unseen``): those of ``split`` none of
    whose relevant docs is judged relevant for a training query (DESIGN.md section 3).
    """

    def __init__(
        self,
        data: RetrievalData,
        split: str = "test",
        *,
        exclude_self: bool = False,
        mesh: Mesh | None = None,
        ties: str = "trec_eval",
    ):
        if ties not in TIES:
            raise ValueError(f"unknown eval.ties {ties!r}; use one of {', '.join(TIES)}")
        self.data, self.split, self.exclude_self, self.mesh = data, split, exclude_self, mesh
        self.ties = ties
        self.tie_order = retrieval.trec_tie_order(data.corpus_ids) if ties == "trec_eval" else None
        self.qrels = data.qrels_for(split)
        self.qids = data.judged_queries(split)
        if not self.qids:
            raise ValueError(
                f"split {split!r} of {data.name} has no query with a relevant judgment"
            )
        has_train = split != "train" and "train" in data.qrels
        unseen = set(data.unseen_queries(split)) if has_train else set()
        self.unseen_mask = np.asarray([q in unseen for q in self.qids])
        self.n_unseen = int(self.unseen_mask.sum())
        self.corpus = jnp.asarray(data.corpus)

    @classmethod
    def from_config(
        cls, data: RetrievalData, eval_cfg, *, split: str | None = None, mesh: Mesh | None = None
    ) -> Evaluator:
        """The evaluator of a config's ``eval`` block (``split`` overrides ``eval.split``)."""
        return cls(
            data,
            eval_cfg.split if split is None else split,
            exclude_self=bool(eval_cfg.exclude_self),
            mesh=mesh,
            ties=eval_cfg.get("ties", "trec_eval"),
        )

    def per_query(
        self, comp: Compressor, dim: int, qids: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Per-query metrics of ``comp`` at size ``dim`` (default: every judged query)."""
        qids = self.qids if qids is None else list(qids)
        data = self.data
        exclude = retrieval.self_exclusion(qids, data.corpus_ids) if self.exclude_self else None
        q_emb = jnp.asarray(data.queries[data.query_rows(qids)])
        bias = comp.doc_bias() if hasattr(comp, "doc_bias") else None
        _, ranked = retrieval.search(
            comp.compress(q_emb, dim),
            comp.compress(self.corpus, dim),
            TOP_K,
            exclude=exclude,
            doc_bias=bias,
            mesh=self.mesh,
            tie_order=self.tie_order,
        )
        return metrics.score_run(ranked, qids, data.corpus_ids, self.qrels)

    def mean_ndcg(self, comp: Compressor, dim: int, qids: Sequence[str] | None = None) -> float:
        return float(self.per_query(comp, dim, qids)["ndcg@10"].mean())

    def summarize(self, per_query: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Means over all judged queries, and ``<metric>_unseen`` over the unseen ones."""
        row = {m: float(v.mean()) for m, v in per_query.items()}
        if self.unseen_mask.any():
            u = self.unseen_mask
            row |= {f"{m}_unseen": float(v[u].mean()) for m, v in per_query.items()}
        return row

    def score_ranking(self, ranked_ids: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
        """Per-query metrics of a ranking made elsewhere (a faiss index): for each judged
        query in order, its ranked document ids, best first."""
        if len(ranked_ids) != len(self.qids):
            raise ValueError(f"{len(ranked_ids)} rankings for {len(self.qids)} queries")
        row = {d: i for i, d in enumerate(self.data.corpus_ids)}
        width = max([len(r) for r in ranked_ids] + [1])
        ranked = np.full((len(ranked_ids), width), -1, np.int64)
        for i, ids in enumerate(ranked_ids):
            ranked[i, : len(ids)] = [row[d] for d in ids]
        return metrics.score_run(ranked, self.qids, self.data.corpus_ids, self.qrels)

    def evaluate(self, compressors: Mapping[str, Compressor], sizes: Sequence[int]) -> Results:
        """Mean metrics of each compressor at each size: method -> size -> metric (all
        queries, and ``<metric>_unseen`` where the split has unseen queries)."""
        out: Results = {}
        for name, comp in compressors.items():
            out[name] = {str(dim): self.summarize(self.per_query(comp, dim)) for dim in sizes}
        return out
