"""Scoring: one :class:`Evaluator` scores any compressor at any size on one split.

Every command that scores (train, evaluate, reproduce, analyze, validation during training)
goes through :class:`Evaluator`, so every option of ``config.eval`` reaches every score.
Exact cosine search over the whole corpus (chunked, sharded over ``mesh``), then nDCG@10,
Recall@100 and MRR@10 with trec_eval semantics (:mod:`smec_jax.evaluation.metrics`).

A compressor is a :class:`smec_jax.core.compressor.Compressor`: its ``compress_queries``
maps the queries (asymmetric maps), its ``doc_bias()`` (the doc_prior control), where not
None, is added to every score, and ``metric = "ip"`` scores raw inner products instead of
cosines.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from smec_jax.core import codes, retrieval
from smec_jax.core.compressor import Compressor
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation import metrics
from smec_jax.evaluation.fidelity import top_k_agreement

METRICS = ("ndcg@10", "recall@100", "mrr@10")
TOP_K = 100
TIES = ("trec_eval", "row")
SCORINGS = ("symmetric", "asymmetric")
Results = dict[str, dict[str, dict[str, float]]]  # method -> size -> metric -> mean


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
    whose relevant docs is judged relevant for a training query (DESIGN.md section 3); with
    no training judgments, every query of ``split``.
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
        # unseen: no relevant document judged for a training query; with no training
        # judgments at all, every query (scoring the training split itself: none)
        unseen = set(data.unseen_queries(split)) if split != "train" else set()
        self.unseen_mask = np.asarray([q in unseen for q in self.qids])
        self.n_unseen = int(self.unseen_mask.sum())
        self.corpus = jnp.asarray(data.corpus)
        self._calibrations: dict = {}  # (id(comp), dim, precision) -> (comp, Calibration)

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
        self,
        comp: Compressor,
        dim: int,
        qids: Sequence[str] | None = None,
        precision: str = "float32",
        scoring: str = "symmetric",
    ) -> dict[str, np.ndarray]:
        """Per-query metrics of ``comp`` at size ``dim`` (default: every judged query).

        ``precision`` (see :mod:`smec_jax.core.codes`) stores the documents as codes calibrated
        on this corpus; ``scoring`` "symmetric" codes the queries the same way (binary codes
        then search by XOR and popcount), "asymmetric" keeps them float against the decoded
        documents. float32 is the plain cosine search.
        """
        _, ranked = self.search(comp, dim, TOP_K, qids, precision, scoring)
        qids = self.qids if qids is None else list(qids)
        return metrics.score_run(ranked, qids, self.data.corpus_ids, self.qrels)

    def per_query_faiss(
        self,
        comp: Compressor,
        dim: int,
        qids: Sequence[str] | None = None,
        spec: str = "PQ32",
        opq_iterations: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-query metrics of ``comp`` at ``dim`` with the documents in a faiss
        ``index_factory(spec)`` index (``"PQ32"``, ``"OPQ16,PQ16"``, ``"RaBitQ"``) trained
        on this corpus's compressed vectors, searched with float queries (asymmetric
        distance, inner product); ties at the cut as this Evaluator cuts them.
        ``opq_iterations``: OPQ's iterations (None: faiss's default)."""
        from smec_jax.serving import faiss_index

        qids = self.qids if qids is None else list(qids)
        index = _faiss_index(comp, dim, spec, self.data.corpus, opq_iterations)
        q = np.asarray(
            comp.compress_queries(jnp.asarray(self.data.queries[self.data.query_rows(qids)]), dim),
            np.float32,
        )
        n = len(self.data.corpus_ids)
        k = TOP_K + int(self.exclude_self)
        _, rows = faiss_index.tie_complete(lambda w: index.search(q, w), n, k, self.tie_rank)
        if self.exclude_self:
            own = retrieval.self_exclusion(qids, self.data.corpus_ids)
            rows = np.stack(
                [
                    np.r_[r[r != o], np.full(int((r == o).sum()), -1)]
                    for r, o in zip(rows, own, strict=True)
                ]
            )
        return metrics.score_run(rows[:, :TOP_K], qids, self.data.corpus_ids, self.qrels)

    @functools.cached_property
    def tie_rank(self) -> np.ndarray:
        """Each corpus row's place in this Evaluator's tie order (lower wins a tie)."""
        n = len(self.data.corpus_ids)
        return retrieval.tie_ranks(self.tie_order if self.tie_order is not None else np.arange(n))

    def agreement(self, comp: Compressor, dim: int, reference: np.ndarray) -> np.ndarray:
        """Per judged query, the share of ``reference``'s top k (rows of :meth:`search`, k its
        width; e.g. the uncompressed embeddings' ranking) that ``comp`` at ``dim`` also
        ranks in its top k. It reads no judgment: how faithful a compressed ranking is to
        the one it replaces, on queries no one has labelled."""
        _, rows = self.search(comp, dim, np.shape(reference)[1])
        return top_k_agreement(reference, rows)

    def search(self, comp, dim, k, qids=None, precision="float32", scoring="symmetric"):
        """(scores, rows) of the top ``k`` of each query, as :meth:`per_query` ranks them."""
        if scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {scoring!r}; use one of {', '.join(SCORINGS)}")
        qids = self.qids if qids is None else list(qids)
        data = self.data
        exclude = retrieval.self_exclusion(qids, data.corpus_ids) if self.exclude_self else None
        q = comp.compress_queries(jnp.asarray(data.queries[data.query_rows(qids)]), dim)
        c = comp.compress(self.corpus, dim)
        kw = dict(
            exclude=exclude,
            doc_bias=comp.doc_bias(),
            mesh=self.mesh,
            tie_order=self.tie_order,
        )
        if precision == "float32":
            return retrieval.search(q, c, k, metric=comp.metric, **kw)
        cal = self.calibration(comp, dim, precision, c)
        c_codes = codes.encode(np.asarray(c), cal)
        q_codes = codes.encode(np.asarray(q), cal)
        if precision in codes.BINARY and scoring == "symmetric":
            return retrieval.search(q_codes, c_codes, k, metric="hamming", n_bits=dim, **kw)
        qv = codes.decode(q_codes, cal) if scoring == "symmetric" else codes.query_vectors(q, cal)
        return retrieval.search(qv, codes.decode(c_codes, cal), k, metric="ip", **kw)

    def per_query_funnel(
        self,
        comp: Compressor,
        first: tuple[int, str, str],
        shortlist: int,
        rescore: tuple[int, str],
        qids: Sequence[str] | None = None,
        rescore_comp: Compressor | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-query metrics of a funnel over a nested compressor: the top ``shortlist`` by
        the ``first`` = (size, precision, scoring) codes, rescored exactly by the float query
        against the ``rescore`` = (size, precision) documents; ties in trec_eval's order.
        The rescoring vectors are ``rescore_comp``'s (e.g. truncation at full size: the
        original embeddings) where given, else ``comp``'s own."""
        qids = self.qids if qids is None else list(qids)
        _, cand = self.search(comp, first[0], shortlist, qids, first[1], first[2])
        comp = comp if rescore_comp is None else rescore_comp
        dim, precision = rescore
        q = np.asarray(
            comp.compress_queries(jnp.asarray(self.data.queries[self.data.query_rows(qids)]), dim)
        )
        c = np.asarray(comp.compress(self.corpus, dim))
        if precision != "float32":
            cal = self.calibration(comp, dim, precision, c)
            c = codes.decode(codes.encode(c, cal), cal)
        bias = comp.doc_bias()
        bias = None if bias is None else np.asarray(bias, np.float32)
        tie_rank = self.tie_rank
        ranked = np.full((len(qids), TOP_K), -1, np.int64)
        for i, rows in enumerate(cand):
            rows = rows[rows >= 0]
            s = c[rows] @ q[i] + (bias[rows] if bias is not None else 0.0)
            best = rows[np.lexsort((tie_rank[rows], -s))][:TOP_K]
            ranked[i, : len(best)] = best
        return metrics.score_run(ranked, qids, self.data.corpus_ids, self.qrels)

    def calibration(self, comp, dim: int, precision: str, corpus_codes=None) -> codes.Calibration:
        """The codes' calibration on this corpus for (comp, dim, precision), computed once."""
        key = (id(comp), dim, precision)
        if key not in self._calibrations:
            c = comp.compress(self.corpus, dim) if corpus_codes is None else corpus_codes
            self._calibrations[key] = (comp, codes.calibrate(np.asarray(c), precision))
        return self._calibrations[key][1]

    def mean_ndcg(
        self, comp: Compressor, dim: int, qids: Sequence[str] | None = None, precision="float32"
    ) -> float:
        return float(self.per_query(comp, dim, qids, precision)["ndcg@10"].mean())

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

    def evaluate(
        self,
        compressors: Mapping[str, Compressor],
        sizes: Sequence[int],
        per_query_out: dict | None = None,
    ) -> Results:
        """Mean metrics of each compressor at each size: method -> size -> metric (all
        queries, and ``<metric>_unseen`` where the split has unseen queries). With
        ``per_query_out``, also fills ``per_query_out[method]`` with the (sizes, queries)
        nDCG@10 of every judged query, in ``self.qids`` order."""
        out: Results = {}
        for name, comp in compressors.items():
            rows, ndcg = {}, []
            for dim in sizes:
                pq = self.per_query(comp, dim)
                ndcg.append(pq["ndcg@10"])
                rows[str(dim)] = self.summarize(pq) | {
                    "bytes_per_vector": self.bytes_per_vector(comp, dim)
                }
            out[name] = rows
            if per_query_out is not None:
                per_query_out[name] = np.stack(ndcg)
        return out

    def bytes_per_vector(self, comp: Compressor, dim: int) -> int:
        """What one document costs at ``dim`` as float32 (a compressor with its own cost,
        such as a sparse code, says so with ``bytes_per_vector(dim)``)."""
        own = comp.bytes_per_vector(dim)
        if own is not None:
            return int(own)
        return 4 * int(comp.compress(self.corpus[:1], dim).shape[1])


_FAISS_CACHE: list = []  # [(comp, dim, spec, corpus, index)]: the last one built


def _faiss_index(comp, dim: int, spec: str, corpus: np.ndarray, opq_iterations=None):
    """The faiss index of ``comp``'s ``dim``-d corpus codes under ``spec``, built once for
    consecutive calls (a report scores the same point on validation, then on test)."""
    from smec_jax.serving import faiss_index

    for c, d, sp, corp, index in _FAISS_CACHE:
        if c is comp and d == dim and sp == spec and corp is corpus:
            return index
    x = np.asarray(comp.compress(jnp.asarray(corpus), dim), np.float32)
    index = faiss_index.factory_index(x, spec, opq_iterations=opq_iterations)
    _FAISS_CACHE[:] = [(comp, dim, spec, corpus, index)]
    return index
