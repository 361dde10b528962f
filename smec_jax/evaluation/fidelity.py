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
from smec_jax.core import codes, export, retrieval
from smec_jax.datasets.data import DataError, load_embedding_matrix, read_ids
from smec_jax.evaluation import stats
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
    query_ids: str | Path | None = None,
    versus: str | Path | None = None,
) -> dict:
    """{"k", "queries", "sizes", "map": {size: mean}, "codes": {size: mean}} for every
    query of ``embeddings`` (or those listed in the ids file ``query_ids``); with
    ``versus`` (another compressor), also ``"versus": {"compressor", "map": {size: mean},
    "diff": {size: {"diff", "lo", "hi"}}}``: its agreement at the sizes both have, and the
    paired bootstrap 95% interval of this one's minus its, over the queries; with ``out``,
    also written there as JSON (atomically)."""
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
    (corpus, corpus_ids), (queries, all_qids) = parts["corpus"], parts["queries"]
    if query_ids is not None:
        queries = queries[_rows_of(read_ids(Path(query_ids)), all_qids, Path(query_ids), folder)]
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

    def map_agreement(ex, d):  # per query, at size d, of the exported map ex
        q = export.apply_exported(ex, queries, d, queries=True)
        _, top = retrieval.search(q, export.apply_exported(ex, corpus, d), k)
        return top_k_agreement(full_top, top), q

    per_query = {}
    for d in sizes:
        per_query[d], q = map_agreement(exported, d)
        doc["map"][str(d)] = float(per_query[d].mean())
        if table is not None:
            _, top = retrieval.search(q, table[:, :d], k)  # cosine: it normalises the rows
            doc["codes"][str(d)] = float(top_k_agreement(full_top, top).mean())
    if versus is not None:
        other = export.load_numpy(versus)
        if export.input_dim(other) != corpus.shape[1]:
            raise DataError(
                f"{versus}: takes {export.input_dim(other)}-d inputs, not {corpus.shape[1]}"
            )
        both = [d for d in sizes if d in {int(s) for s in other["sizes"]}]
        if not both:
            raise ValueError(f"{versus} has none of the sizes {sizes} of {compressor}")
        doc["versus"] = {"compressor": str(versus), "map": {}, "diff": {}}
        for d in both:
            theirs, _ = map_agreement(other, d)
            doc["versus"]["map"][str(d)] = float(theirs.mean())
            doc["versus"]["diff"][str(d)] = stats.paired_bootstrap(per_query[d], theirs)
    if out is not None:
        files.atomic_write(out, json.dumps(doc, indent=1).encode())
    return doc


def _rows_of(wanted: list[str], ids: list[str], path: Path, folder: Path) -> np.ndarray:
    row = {q: i for i, q in enumerate(ids)}
    missing = next((q for q in wanted if q not in row), None)
    if missing is not None:
        raise DataError(f"{path}: query id {missing!r} is not in {folder / 'query_ids.txt'}")
    return np.asarray([row[q] for q in wanted], np.int64)


def table(doc: dict) -> str:
    """The result as a plain-text table: one row per size."""
    cols = [c for c in ("map", "codes") if c in doc]
    lines = [
        f"top-{doc['k']} agreement with the full-size ranking ({doc['queries']} queries)",
        "size  " + "  ".join(f"{c:>6}" for c in cols),
    ]
    versus = doc.get("versus")
    if versus:
        lines[1] += f"  {'versus':>6}  difference [95% interval]"
    for d in doc["sizes"]:
        line = f"{d:>4}  " + "  ".join(f"{doc[c][str(d)]:6.3f}" for c in cols)
        if versus and str(d) in versus["diff"]:
            r = versus["diff"][str(d)]
            line += (
                f"  {versus['map'][str(d)]:6.3f}  {r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"
            )
        lines.append(line)
    if versus:
        lines.append(f"versus: {versus['compressor']}")
    return "\n".join(lines)


def full_top(corpus, queries, k: int = 10, exclude=None) -> np.ndarray:
    """The full-size top-``k`` rows of ``queries`` over ``corpus`` (``exclude``: per query,
    a corpus row left out): the reference :func:`agreement_at` compares with."""
    k = min(k, len(corpus) - (exclude is not None))
    return retrieval.search(queries, corpus, k, exclude=exclude)[1]


def agreement_at(
    comp,
    corpus,
    queries,
    sizes,
    k: int = 10,
    exclude=None,
    precision: str = "float32",
    full=None,
) -> dict[str, float]:
    """Mean top-``k`` agreement of ``comp`` (a :class:`~smec_jax.core.compressor.Compressor`)
    with the full-size ranking of ``queries`` over ``corpus``, at each size; ``exclude``:
    per query, a corpus row to leave out of both rankings (a document used as a query).
    ``precision``: the documents stored as codes calibrated on ``corpus``, searched by
    float queries (asymmetric scoring, :func:`~smec_jax.core.codes.query_vectors`).
    ``full``: :func:`full_top` of the same arguments, where the caller already has it."""
    if full is None:
        full = full_top(corpus, queries, k, exclude)
    k = full.shape[1]
    out = {}
    for d in sizes:
        q = np.asarray(comp.compress_queries(queries, int(d)), np.float32)
        c = np.asarray(comp.compress(corpus, int(d)), np.float32)
        metric = "cosine"
        if precision != "float32":  # inner products with the reconstructions, as faiss's
            cal = codes.calibrate(c, precision)
            c, q = codes.decode(codes.encode(c, cal), cal), codes.query_vectors(q, cal)
            metric = "ip"
        _, top = retrieval.search(q, c, k, exclude=exclude, metric=metric)
        out[str(d)] = float(top_k_agreement(full, top).mean())
    return out


def report_unjudged(comps: dict, data, sizes, workdir, k: int = 10, max_docs: int = 1000) -> dict:
    """Where no judgment scores a run: each compressor's top-``k`` agreement with the
    full-size ranking at every size, on the data's queries (a log), else on up to
    ``max_docs`` documents as queries (each without itself); printed and written to
    ``workdir/agreement.json``."""
    if len(data.query_ids):
        queries, exclude = data.queries, None
        on = f"the {len(data.query_ids)} given queries"
    else:
        rows = np.sort(np.random.default_rng(0).permutation(len(data.corpus_ids))[:max_docs])
        queries, exclude = data.corpus[rows], rows.astype(np.int32)
        on = f"{len(rows)} documents as queries, each without itself"
    doc = {
        "k": k,
        "on": on,
        "sizes": [int(d) for d in sizes],
        "agreement": {
            name: agreement_at(c, data.corpus, queries, sizes, k, exclude)
            for name, c in comps.items()
        },
    }
    names = list(comps)
    lines = [f"top-{k} agreement with the full-size ranking on {on} (no judgments read)"]
    lines.append("size  " + "".join(f"{n:>20}" for n in names))
    for d in doc["sizes"]:
        lines.append(f"{d:>4}  " + "".join(f"{doc['agreement'][n][str(d)]:>20.4f}" for n in names))
    print("\n".join(lines), flush=True)
    files.write_json(Path(workdir) / "agreement.json", doc)
    print(f"wrote {workdir}/agreement.json")
    return doc
