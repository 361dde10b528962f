"""Label-free fidelity: how much of the uncompressed top k a compressor keeps, on your queries.

A user about to serve compressed vectors rarely has judgments for their own corpus, but has
its embeddings and some queries (a log, or held-out pseudo-queries). The share of each
query's full-size top k that the compressed search also returns in its top k needs no
judgment, and it is what a compressor is meant to preserve; the cross-corpus analysis
reports it beside nDCG@10 (``agree@10``, :meth:`smec_jax.evaluation.evaluator.Evaluator.agreement`).

  python -m launch.agreement --embeddings EMB_DIR --compressor RUN/compressor.npz \
      [--corpus_codes RUN/corpus_codes.npz] [--k 10] [--out agreement.json]

``EMB_DIR`` is an embedding folder (``corpus.npy``, ``corpus_ids.txt``, ``queries.npy``,
``query_ids.txt``, as ``launch.embed`` writes it). Every query of it is scored at every
trained size of the compressor: by its map, and by the fitted corpus codes where given.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from smec_jax import files
from smec_jax.core import export, retrieval
from smec_jax.datasets.data import DataError, load_embedding_matrix, read_ids
from smec_jax.serving import compress


def top_k_agreement(full_top: np.ndarray, comp_top: np.ndarray) -> np.ndarray:
    """Per query, the share of ``full_top``'s rows (queries, k) found in ``comp_top``'s;
    a row of -1 (no document: fewer than k searchable) counts for neither."""
    full_top, comp_top = np.asarray(full_top), np.asarray(comp_top)
    valid = full_top >= 0
    hits = (comp_top[:, :, None] == full_top[:, None, :]).any(axis=1) & valid
    return hits.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)


def run(
    embeddings: str | Path,
    compressor: str | Path,
    corpus_codes: str | Path | None = None,
    k: int = 10,
    out: str | Path | None = None,
) -> dict:
    """{"k", "queries", "sizes", "map": {size: mean}, "codes": {size: mean}} for every
    query of ``embeddings``; with ``out``, also written there as JSON (atomically)."""
    folder = Path(embeddings)
    missing = [f for pair in compress.PARTS.values() for f in pair if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{folder}: not an embedding folder with corpus and queries (no {', '.join(missing)});"
            " make one with `python -m launch.embed`"
        )
    parts = {}
    for part, (matrix, ids_file) in compress.PARTS.items():
        ids = read_ids(folder / ids_file)
        parts[part] = (load_embedding_matrix(folder / matrix, ids), ids)
    (corpus, corpus_ids), (queries, _) = parts["corpus"], parts["queries"]
    exported = export.load_numpy(compressor)
    if export.input_dim(exported) != corpus.shape[1]:
        raise DataError(
            f"{compressor}: takes {export.input_dim(exported)}-d inputs, "
            f"{folder} holds {corpus.shape[1]}-d embeddings"
        )
    if not 0 < k <= len(corpus):
        raise ValueError(f"--k {k}: choose 1 to {len(corpus)} (the corpus size)")
    sizes = [int(s) for s in exported["sizes"]]
    table = None
    if corpus_codes is not None:
        table = compress.corpus_codes_table(corpus_codes, corpus_ids, "corpus", max(sizes))
    _, full_top = retrieval.search(queries, corpus, k)
    doc = {"k": k, "queries": len(queries), "sizes": sizes, "map": {}}
    if table is not None:
        doc["codes"] = {}
    for d in sizes:
        q = export.apply_exported(exported, queries, d, queries=True)
        _, top = retrieval.search(q, export.apply_exported(exported, corpus, d), k)
        doc["map"][str(d)] = float(top_k_agreement(full_top, top).mean())
        if table is not None:
            _, top = retrieval.search(q, table[:, :d], k)  # cosine: it normalises the rows
            doc["codes"][str(d)] = float(top_k_agreement(full_top, top).mean())
    if out is not None:
        files.atomic_write(out, json.dumps(doc, indent=1).encode())
    return doc


def table(doc: dict) -> str:
    """The result as a plain-text table: one row per size."""
    cols = [c for c in ("map", "codes") if c in doc]
    lines = [
        f"top-{doc['k']} agreement with the full-size ranking ({doc['queries']} queries)",
        "size  " + "  ".join(f"{c:>6}" for c in cols),
    ]
    for d in doc["sizes"]:
        lines.append(f"{d:>4}  " + "  ".join(f"{doc[c][str(d)]:6.3f}" for c in cols))
    return "\n".join(lines)
