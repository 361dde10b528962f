"""BEIR folders and embedding folders: reading, validating, and the in-memory dataset.

A retrieval dataset here is a BEIR folder (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``) plus an embedding folder ``<dataset>/embeddings/<model>/`` holding
``corpus.npy``, ``queries.npy`` (float16 or float32, one row per id), ``corpus_ids.txt``,
``query_ids.txt`` and ``meta.json``. Everything read is validated; any problem raises
:class:`DataError` whose message is one line naming the file, the row or id, and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

Qrels = dict[str, dict[str, int]]  # query id -> doc id -> graded relevance

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ENV = "SMEC_DATA_DIR"
BEIR_HINT = (
    "get BEIR SciFact from https://github.com/beir-cellar/beir (datasets/scifact.zip) and its "
    "embeddings with `python -m launch.embed`, then point the config at it with "
    f"--config.data.root=DIR or {DATA_ENV}=DIR, or run with --config configs/synthetic.py"
)

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad or missing input data; the message is one line saying where and what to do."""


def default_data_root() -> str:
    """``$SMEC_DATA_DIR`` if set, else the shared data folder beside the checkout."""
    return os.environ.get(DATA_ENV) or str(REPO_ROOT.parent / "shared" / "data")


# --------------------------------------------------------------------------- text files


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields (1-based line number, decoded line) and names the line on bad UTF-8."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                    "re-save the file as UTF-8"
                ) from None


def read_jsonl(path: str | Path) -> list[dict]:
    """Reads a BEIR jsonl file (one object with an ``_id`` per line, blank lines skipped)."""
    path = Path(path)
    rows, seen = [], set()
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{lineno}: malformed JSON ({e.msg}); fix or remove that line"
            ) from None
        if not isinstance(row, dict) or "_id" not in row:
            raise DataError(f'{path}:{lineno}: expected a JSON object with an "_id" field')
        row["_id"] = str(row["_id"])
        if row["_id"] in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {row['_id']!r}; ids must be unique")
        seen.add(row["_id"])
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no records")
    return rows


def read_qrels(path: str | Path) -> Qrels:
    """Reads ``query-id<TAB>corpus-id<TAB>score`` lines (header optional) into nested dicts."""
    path = Path(path)
    qrels: Qrels = {}
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(
                f"{path}:{lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                f"got {len(fields)}"
            )
        qid, did, score = (f.strip() for f in fields)
        try:
            grade = int(score)
        except ValueError:
            if lineno == 1:  # the BEIR header line
                continue
            raise DataError(f"{path}:{lineno}: score {score!r} is not an integer grade") from None
        qrels.setdefault(qid, {})[did] = grade
    if not qrels:
        raise DataError(f"{path}: split is empty (no judgments)")
    return qrels


def read_ids(path: Path) -> list[str]:
    ids = [line.strip() for _, line in _lines(path)]
    while ids and not ids[-1]:
        ids.pop()
    seen: dict[str, int] = {}
    for row, i in enumerate(ids):
        if not i:
            raise DataError(f"{path}:{row + 1}: empty id")
        if i in seen:
            raise DataError(
                f"{path}:{row + 1}: duplicate id {i!r} (first on line {seen[i] + 1}); "
                "ids must be unique"
            )
        seen[i] = row
    return ids


def doc_text(row: dict) -> str:
    """BEIR's document text as it is embedded: title and body joined by a space."""
    return (str(row.get("title") or "") + " " + str(row.get("text") or "")).strip()


def query_text(row: dict) -> str:
    """A query's text as it is embedded."""
    return str(row.get("text", ""))


def text_fingerprint(rows: list[dict], text) -> str:
    """sha256 of every (id, embedded text) pair in row order: what an embedding folder was
    made from. Recorded in meta.json by ``launch.embed``; checked on every load."""
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['_id']}\t{text(r)}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- embeddings


def load_embedding_matrix(path: Path, ids: list[str]) -> np.ndarray:
    """Loads an (n, D) float16/float32 matrix, checks it against its ids, returns L2-normed float32."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; create it with `python -m launch.embed`")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(
            f"{path}: not a plain numeric .npy array ({e}); pickles are refused"
        ) from None
    if x.ndim != 2 or x.dtype not in (np.float16, np.float32):
        raise DataError(f"{path}: expected a 2-D float16/float32 array, got {x.dtype} {x.shape}")
    if x.shape[0] != len(ids):
        raise DataError(
            f"{path}: {x.shape[0]} rows but {len(ids)} ids in the ids file; "
            "re-run `python -m launch.embed` so rows and ids match"
        )
    x = x.astype(np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{path}: row {row} (id {ids[row]!r}) contains NaN/Inf ({int(bad.sum())} such rows); "
            "re-encode those texts"
        )
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0
    if zero.any():
        row = int(np.argmax(zero))
        raise DataError(
            f"{path}: row {row} (id {ids[row]!r}) is a zero vector ({int(zero.sum())} such rows); "
            "re-encode those texts or drop them"
        )
    return x / norms[:, None]


@dataclasses.dataclass
class RetrievalData:
    """An embedded retrieval dataset held in memory.

    Attributes:
      name: dataset name (e.g. "scifact").
      encoder: encoder name (e.g. "all-MiniLM-L6-v2").
      corpus_ids / query_ids: ids in row order.
      corpus: (n_docs, D) float32, L2-normalised.
      queries: (n_queries, D) float32, L2-normalised; every query of every split.
      qrels: split name -> query id -> doc id -> grade. Only known ids are kept.
      source_dir: the BEIR folder it was read from ("" for generated data).
      pseudo_queries: (n, D) float32 unit pseudo-queries made from the corpus
        (:mod:`smec_jax.datasets.pseudo_queries`), or None until attached; ``pseudo_source`` says
        what they are; ``pseudo_doc_rows`` (n,) the corpus row each was made from, or None
        where that is not known.
    """

    name: str
    encoder: str
    corpus_ids: list[str]
    corpus: np.ndarray
    query_ids: list[str]
    queries: np.ndarray
    qrels: dict[str, Qrels]
    source_dir: str = ""
    pseudo_queries: np.ndarray | None = None
    pseudo_source: str = ""
    pseudo_doc_rows: np.ndarray | None = None

    def with_pseudo_queries(
        self, x: np.ndarray, source: str, doc_rows: np.ndarray | None = None
    ) -> RetrievalData:
        """A copy carrying the pseudo-queries ``x`` (described by ``source``), made from the
        corpus rows ``doc_rows`` where known."""
        if doc_rows is not None:
            doc_rows = np.asarray(doc_rows, np.int64)
            if doc_rows.shape != (len(x),) or not np.all(
                (doc_rows >= 0) & (doc_rows < len(self.corpus_ids))
            ):
                raise ValueError(
                    f"{self.name}: pseudo-query doc rows must be {len(x)} corpus rows "
                    f"in [0, {len(self.corpus_ids)})"
                )
        return dataclasses.replace(
            self, pseudo_queries=x, pseudo_source=source, pseudo_doc_rows=doc_rows
        )

    @property
    def dim(self) -> int:
        return int(self.corpus.shape[1])

    def judged_queries(self, split: str) -> list[str]:
        """Query ids of ``split`` with at least one relevant (grade > 0) judgment, in row order."""
        q = self.qrels_for(split)
        return [i for i in self.query_ids if any(g > 0 for g in q.get(i, {}).values())]

    def qrels_for(self, split: str) -> Qrels:
        if split not in self.qrels:
            raise DataError(
                f"dataset {self.name!r} has no split {split!r}; splits: {sorted(self.qrels)}"
            )
        return self.qrels[split]

    def query_rows(self, qids: list[str]) -> np.ndarray:
        index = {q: i for i, q in enumerate(self.query_ids)}
        return np.asarray([index[q] for q in qids], dtype=np.int64)

    def unseen_queries(self, split: str = "test", train_split: str = "train") -> list[str]:
        """Judged queries of ``split`` none of whose relevant docs is relevant for a train query.

        These are the queries on which a supervised compressor cannot score by remembering
        which documents were relevant in training (DESIGN.md section 3).
        """
        seen_docs = {
            d for rels in self.qrels.get(train_split, {}).values() for d, g in rels.items() if g > 0
        }
        q = self.qrels_for(split)
        return [
            i
            for i in self.judged_queries(split)
            if not any(g > 0 and d in seen_docs for d, g in q[i].items())
        ]


def _filter_qrels(qrels: Qrels, qids: set[str], dids: set[str], path: Path) -> Qrels:
    """Drops judgments naming unknown ids, with one warning giving the count."""
    kept: Qrels = {}
    dropped = 0
    for q, rels in qrels.items():
        if q not in qids:
            dropped += len(rels)
            continue
        good = {d: g for d, g in rels.items() if d in dids}
        dropped += len(rels) - len(good)
        if good:
            kept[q] = good
    if dropped:
        log.warning("%s: skipped %d judgments naming unknown query or doc ids", path, dropped)
    if not kept:
        raise DataError(f"{path}: no judgment names a known query and document; wrong folder?")
    return kept


def load_embedded(
    beir_dir: str | Path, encoder: str, splits: tuple[str, ...] | None = None
) -> RetrievalData:
    """Loads a BEIR folder's qrels and its embeddings by ``encoder`` into memory.

    Args:
      beir_dir: the BEIR folder (holding ``qrels/`` and ``embeddings/<encoder>/``).
      encoder: the embedding folder's name, or a path to an embedding folder.
      splits: qrels splits to read; default every ``qrels/*.tsv``.

    Raises:
      DataError: one line naming the file, the row or id and the fix.
    """
    beir_dir = Path(beir_dir)
    if not beir_dir.is_dir():
        raise DataError(f"data folder {beir_dir} not found; {BEIR_HINT}")
    emb_dir = Path(encoder) if Path(encoder).is_dir() else beir_dir / "embeddings" / encoder
    if not emb_dir.is_dir():
        raise DataError(
            f"embedding folder {emb_dir} not found; create it with "
            f"`python -m launch.embed --beir_dir {beir_dir} --model MODEL`"
        )
    corpus_ids = read_ids(emb_dir / "corpus_ids.txt")
    query_ids = read_ids(emb_dir / "query_ids.txt")
    corpus = load_embedding_matrix(emb_dir / "corpus.npy", corpus_ids)
    queries = load_embedding_matrix(emb_dir / "queries.npy", query_ids)
    if corpus.shape[1] != queries.shape[1]:
        raise DataError(
            f"{emb_dir}: queries are {queries.shape[1]}-d but the corpus is {corpus.shape[1]}-d; "
            "embed both with the same model"
        )
    meta = {}
    if (emb_dir / "meta.json").is_file():
        try:
            meta = json.loads((emb_dir / "meta.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{emb_dir / 'meta.json'}: malformed JSON ({e})") from None
    check_against_texts(beir_dir, emb_dir, corpus_ids, query_ids, meta)
    qrels_dir = beir_dir / "qrels"
    if splits is None:
        splits = tuple(sorted(p.stem for p in qrels_dir.glob("*.tsv")))
        if not splits:
            raise DataError(f"{qrels_dir}: no qrels/<split>.tsv files")
    qset, dset = set(query_ids), set(corpus_ids)
    qrels = {
        s: _filter_qrels(read_qrels(qrels_dir / f"{s}.tsv"), qset, dset, qrels_dir / f"{s}.tsv")
        for s in splits
    }
    return RetrievalData(
        name=beir_dir.name,
        encoder=str(meta.get("model", emb_dir.name)),
        corpus_ids=corpus_ids,
        corpus=corpus,
        query_ids=query_ids,
        queries=queries,
        qrels=qrels,
        source_dir=str(beir_dir),
    )


def check_against_texts(
    beir_dir: Path, emb_dir: Path, corpus_ids: list[str], query_ids: list[str], meta: Mapping
) -> None:
    """Refuses an embedding folder that no longer matches the BEIR texts beside it.

    Where ``corpus.jsonl`` / ``queries.jsonl`` exist, they are read (so malformed JSON,
    duplicate ids and bad UTF-8 are refused here too), their ids must equal the embedding
    ids row by row, and where meta.json records a text fingerprint, the texts must still
    hash to it: a stale embedding of an edited corpus is never scored silently.
    """
    fingerprints = meta.get("fingerprint") or {}
    for kind, ids, ids_file, text in (
        ("corpus", corpus_ids, "corpus_ids.txt", doc_text),
        ("queries", query_ids, "query_ids.txt", query_text),
    ):
        path = beir_dir / f"{kind}.jsonl"
        if not path.is_file():
            continue
        rows = read_jsonl(path)
        texts_ids = [r["_id"] for r in rows]
        if texts_ids != ids:
            i = next(
                (i for i, (a, b) in enumerate(zip(ids, texts_ids, strict=False)) if a != b),
                min(len(ids), len(texts_ids)),
            )
            here = repr(ids[i]) if i < len(ids) else "nothing"
            there = repr(texts_ids[i]) if i < len(texts_ids) else "nothing"
            raise DataError(
                f"{emb_dir / ids_file}: row {i + 1} is {here} but {path} has {there} there "
                f"({len(ids)} vs {len(texts_ids)} ids): the embeddings were made from another "
                f"version of {path.name}; re-run `python -m launch.embed --beir_dir {beir_dir}`"
            )
        want = fingerprints.get(kind)
        if want and text_fingerprint(rows, text) != want:
            raise DataError(
                f"{emb_dir / 'meta.json'}: the {kind} texts in {path} changed since these "
                f"embeddings were made (text fingerprint differs); re-run "
                f"`python -m launch.embed --beir_dir {beir_dir}`"
            )


def write_embedding_folder(
    out_dir: str | Path,
    corpus_ids: list[str],
    corpus: np.ndarray,
    query_ids: list[str],
    queries: np.ndarray,
    meta: Mapping,
) -> None:
    """Writes an embedding folder atomically (:func:`write_folder`)."""
    write_folder(
        out_dir,
        {"corpus.npy": corpus, "queries.npy": queries},
        {"corpus_ids.txt": corpus_ids, "query_ids.txt": query_ids},
        meta,
    )


def write_folder(
    out_dir: str | Path,
    arrays: Mapping[str, np.ndarray],
    id_lists: Mapping[str, list[str]],
    meta: Mapping,
) -> None:
    """Writes ``arrays`` (.npy), ``id_lists`` (one id per line) and ``meta.json`` into the new
    folder ``out_dir`` atomically: all files go to a temp folder, then one rename."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise DataError(f"{out_dir} already exists; remove it or choose another --out")
    tmp = out_dir.with_name(out_dir.name + ".writing")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, x in arrays.items():
        np.save(tmp / name, x)
    for name, ids in id_lists.items():
        (tmp / name).write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    (tmp / "meta.json").write_text(json.dumps(dict(meta), indent=1), encoding="utf-8")
    os.replace(tmp, out_dir)
