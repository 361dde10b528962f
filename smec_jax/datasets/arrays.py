"""Plain arrays as a dataset: your document matrix, perhaps a query log, rarely judgments.

  data = from_arrays(docs)                                   # label-free: documents alone
  data = from_arrays(docs, queries, qrels={"q1": {"d7": 1}}, doc_ids=..., query_ids=...)

``docs`` and ``queries`` are (n, D) float16/float32/float64 numpy arrays or paths to ``.npy``
files (memory-mapped while checked), of any D, not necessarily unit-norm: rows are
L2-normalised here, as the embedding folders are. Ids default to row numbers ("0", "1", ...);
ids files hold one id per line. ``qrels`` (query id -> doc id -> grade, or a
``query-id<TAB>corpus-id<TAB>score`` TSV path) are training judgments: they become the split
``train``, from which validation is carved; ``test_qrels`` (the command line's
``data.test_qrels``) become the split ``test``, which only the evaluation reads.

Every problem is one :class:`DataError` line naming the file (or argument), the row or id,
and the fix; nothing is written. With a config, ``data.source = "arrays"`` reads
``data.corpus`` (required), ``data.queries``, ``data.corpus_ids``, ``data.query_ids``,
``data.qrels`` and ``data.test_qrels`` (:func:`load`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from smec_jax.datasets.data import DataError, Qrels, RetrievalData, read_ids, read_qrels

CHUNK = 65536  # rows checked and normalised at a time (memory stays flat on a memmap)


def _matrix(x, what: str) -> tuple[np.ndarray, str]:
    """(the array, possibly memory-mapped; how to name it in a message)."""
    if isinstance(x, (str, Path)):
        path = Path(x)
        if not path.is_file():
            raise DataError(f"{path}: file not found ({what})")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise DataError(
                f"{path}: not a plain numeric .npy array ({e}); pickles are refused"
            ) from None
        return arr, str(path)
    if not isinstance(x, np.ndarray):
        raise DataError(f"{what}: expected a numpy array or a .npy path, got {type(x).__name__}")
    return x, what


def normalized_chunk(x: np.ndarray, path, start: int) -> np.ndarray:
    """Rows ``start ..`` of the file ``path`` as unit float32 rows; the first NaN, infinite
    or all-zero row refused, named by its row in the file."""
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():
        raise DataError(f"{path}: row {start + int(np.argmax(bad))} is NaN/Inf or a zero vector")
    return x / norms


def unit_rows(x, what: str, dim: int | None = None) -> np.ndarray:
    """``x`` (an array or a .npy path) as L2-normalised float32 rows, checked: 2-D, float,
    ``dim`` columns if given, no NaN/Inf or zero row (the first such row is named)."""
    arr, name = _matrix(x, what)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name}: expected an (n, D) matrix with n, D >= 1, got shape {arr.shape}")
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise DataError(
            f"{name}: expected float16/float32/float64 embeddings, got {arr.dtype}; "
            "save them with x.astype(np.float32)"
        )
    if dim is not None and arr.shape[1] != dim:
        raise DataError(
            f"{name}: {arr.shape[1]}-d rows but the documents are {dim}-d; embed both with the "
            "same model"
        )
    out = np.empty(arr.shape, np.float32)
    for start in range(0, arr.shape[0], CHUNK):
        block = np.asarray(arr[start : start + CHUNK], np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.linalg.norm(block, axis=1)
        bad = ~np.isfinite(block).all(axis=1) | ~np.isfinite(norms) | (norms == 0)
        if bad.any():
            row = start + int(np.argmax(bad))
            kind = "a zero vector" if np.isfinite(arr[row]).all() else "NaN/Inf"
            raise DataError(
                f"{name}: row {row} is {kind} ({int(bad.sum())} such rows in rows "
                f"{start}-{start + len(block) - 1}); re-embed or drop those rows"
            )
        out[start : start + len(block)] = block / norms[:, None]
    return out


def _ids(ids, n: int, what: str, rows_of: str) -> list[str]:
    """Ids of ``n`` rows: row numbers by default; a list or an ids file, checked."""
    if ids is None:
        return [str(i) for i in range(n)]
    if isinstance(ids, (str, Path)):
        out, name = read_ids(Path(ids)), str(ids)
    else:
        out, name = [str(i) for i in ids], what
        seen: dict[str, int] = {}
        for row, i in enumerate(out):
            if not i:
                raise DataError(f"{name}: row {row} is an empty id")
            if i in seen:
                raise DataError(
                    f"{name}: duplicate id {i!r} at rows {seen[i]} and {row}; ids must be unique"
                )
            seen[i] = row
    if len(out) != n:
        raise DataError(f"{name}: {len(out)} ids but {rows_of} has {n} rows; give one id per row")
    return out


def _qrels(qrels, what: str, qids: list[str], dids: list[str]) -> Qrels:
    """Judgments as nested str dicts, every id known (the first unknown one is named)."""
    if isinstance(qrels, (str, Path)):
        q, name = read_qrels(Path(qrels)), str(qrels)
    elif isinstance(qrels, Mapping):
        q, name = {}, what
        for qid, rels in qrels.items():
            if not isinstance(rels, Mapping):
                raise DataError(
                    f"{name}: query {qid!r} maps to {type(rels).__name__}; expected "
                    "{doc id: grade}"
                )
            q[str(qid)] = {str(d): int(g) for d, g in rels.items()}
    else:
        raise DataError(f"{what}: expected a dict or a TSV path, got {type(qrels).__name__}")
    known_q, known_d = set(qids), set(dids)
    for qid, rels in q.items():
        if qid not in known_q:
            raise DataError(
                f"{name}: query id {qid!r} is not among the {len(qids)} query ids; give "
                "query_ids (the ids of the query rows) or fix the judgments"
            )
        for did in rels:
            if did not in known_d:
                raise DataError(
                    f"{name}: query {qid!r} judges document {did!r}, which is not among the "
                    f"{len(dids)} document ids; give doc_ids or fix the judgments"
                )
    if not any(g > 0 for rels in q.values() for g in rels.values()):
        raise DataError(f"{name}: no positive judgment (grade > 0); nothing to learn from")
    return q


def from_arrays(
    docs,
    queries=None,
    qrels=None,
    *,
    doc_ids=None,
    query_ids=None,
    test_qrels=None,
    name: str = "arrays",
    encoder: str = "",
) -> RetrievalData:
    """A :class:`RetrievalData` from plain arrays (see the module docstring)."""
    corpus = unit_rows(docs, "docs")
    corpus_ids = _ids(doc_ids, len(corpus), "doc_ids", _name(docs, "docs"))
    if queries is None:
        if qrels is not None or test_qrels is not None or query_ids is not None:
            raise DataError("judgments or query ids were given without queries; pass queries too")
        q_emb, q_ids = np.zeros((0, corpus.shape[1]), np.float32), []
    else:
        q_emb = unit_rows(queries, "queries", corpus.shape[1])
        q_ids = _ids(query_ids, len(q_emb), "query_ids", _name(queries, "queries"))
    splits = {}
    if qrels is not None:
        splits["train"] = _qrels(qrels, "qrels", q_ids, corpus_ids)
    if test_qrels is not None:
        splits["test"] = _qrels(test_qrels, "test_qrels", q_ids, corpus_ids)
    return RetrievalData(
        name=name,
        encoder=encoder,
        corpus_ids=corpus_ids,
        corpus=corpus,
        query_ids=q_ids,
        queries=q_emb,
        qrels=splits,
    )


def _name(x, what: str) -> str:
    return str(x) if isinstance(x, (str, Path)) else what


def load(data_cfg) -> RetrievalData:
    """The dataset of ``data.source = "arrays"``: ``data.corpus`` and the optional files."""
    if not data_cfg.corpus:
        raise DataError(
            "--config.data.source=arrays needs --config.data.corpus=DOCS.npy (an (n, D) matrix)"
        )

    def opt(field: str):
        return data_cfg[field] or None

    return from_arrays(
        data_cfg.corpus,
        opt("queries"),
        opt("qrels"),
        doc_ids=opt("corpus_ids"),
        query_ids=opt("query_ids"),
        test_qrels=opt("test_qrels"),
        name=Path(data_cfg.corpus).stem,
    )
