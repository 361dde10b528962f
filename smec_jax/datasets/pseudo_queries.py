"""Pseudo-queries: unlabelled queries made from the corpus itself.

A user with no query log still has the corpus they will serve. Its titles and sentences are
short texts that look like queries (a SciFact claim is a sentence about a finding; a
DBpedia-Entity query names an entity, as a title does), so embedded with the same encoder
they stand in for a query log: listwise distillation (``objective.distill_term``) fits the
compressed ranking of each to its full-size ranking. No judgment is read.

Rules (which texts of a document become pseudo-queries):

* ``sentences``: the title, then every sentence of the body with at least ``MIN_WORDS``
  words (about 10 per SciFact abstract);
* ``first``: the title and the first such sentence;
* ``titles``: the title (the first sentence where a document has none);
* ``documents``: no text and no encoder: each document's own embedding is a query, and the
  document itself is left out of its candidates (``batches.distill_batches``), so
  it asks the compressor to keep each document's ranking of the others. For embeddings
  that cannot be extended (an API encoder, a model no longer at hand).

A pseudo-query folder (``launch.embed --pseudo_queries RULE``) holds ``queries.npy``
(float16, unit rows), ``query_ids.txt`` (``<doc id>#title``, ``<doc id>#s<i>``) and
``meta.json`` (the model, the rule, and the text fingerprint of the corpus they came from).
It is written like an embedding folder: resumable by chunks, renamed into place whole.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from smec_jax.datasets.data import (
    DataError,
    RetrievalData,
    doc_text,
    load_embedding_matrix,
    read_ids,
    read_jsonl,
    text_fingerprint,
    write_folder,
)

RULES = ("sentences", "first", "titles")  # made from texts, embedded by the encoder
DOCUMENTS = "documents"  # the corpus embeddings themselves: no texts, no encoder
DEFAULT_CACHE = "runs/pseudo_queries"  # data.pseudo_cache: where made folders are kept
MIN_WORDS = 4
# A sentence ends at . ! or ? followed by space and a capital, digit or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` with at least ``MIN_WORDS`` words, in order."""
    parts = _SENTENCE_END.split(text.strip())
    return [s.strip() for s in parts if len(s.split()) >= MIN_WORDS]


def extract(rows: list[dict], rule: str) -> tuple[list[str], list[str]]:
    """(ids, texts) of the pseudo-queries of BEIR corpus ``rows`` under ``rule``."""
    if rule not in RULES:
        raise ValueError(f"unknown pseudo-query rule {rule!r}; use one of {', '.join(RULES)}")
    ids, texts = [], []
    for r in rows:
        title = str(r.get("title") or "").strip()
        body = sentences(str(r.get("text") or ""))
        picked = []
        if title:
            picked.append(("title", title))
        if rule == "sentences":
            picked += [(f"s{i}", s) for i, s in enumerate(body)]
        elif rule == "first" or not title:
            picked += [(f"s{i}", s) for i, s in enumerate(body[:1])]
        for suffix, text in picked:
            ids.append(f"{r['_id']}#{suffix}")
            texts.append(text)
    if not texts:
        raise DataError(f"rule {rule!r} found no pseudo-query text in the corpus")
    return ids, texts


def make(beir_dir, out_dir, encode_fn, *, model_name: str, rule: str, chunk: int = 2048) -> Path:
    """Embeds the pseudo-queries of ``beir_dir/corpus.jsonl`` into the folder ``out_dir``.

    Resumable: finished chunks are kept in ``<out_dir>.partial`` and reused by a rerun; the
    folder appears under its final name only when complete.
    """
    from smec_jax.datasets import encode

    beir_dir, out_dir = Path(beir_dir), Path(out_dir)
    if out_dir.exists():
        raise DataError(f"{out_dir} already exists; remove it or choose another --out")
    rows = read_jsonl(beir_dir / "corpus.jsonl")
    ids, texts = extract(rows, rule)
    work = out_dir.with_name(out_dir.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    x = encode.encode_chunked(texts, encode_fn, work, "pseudo", chunk, f"pseudo-queries ({rule})")
    encode.check_encoded(x, lambda row: f"pseudo-query {ids[row]!r}")
    meta = {
        "model": model_name,
        "rule": rule,
        "min_words": MIN_WORDS,
        "n": len(ids),
        "dim": int(x.shape[1]),
        "corpus_fingerprint": text_fingerprint(rows, doc_text),
        "encode_seconds": round(time.perf_counter() - t0, 1),
    }
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    write_folder(out_dir, {"queries.npy": unit.astype(np.float16)}, {"query_ids.txt": ids}, meta)
    shutil.rmtree(work)
    return out_dir


def load(folder, data: RetrievalData, beir_dir=None) -> np.ndarray:
    """The (n, D) unit pseudo-query embeddings of ``folder``, checked against ``data``: the
    same encoder, the same dimension, ids naming documents of the corpus, and (where
    ``beir_dir`` is given) the corpus texts they were made from."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise DataError(
            f"{folder}: not a pseudo-query folder (no meta.json); make one with "
            "`python -m launch.embed --beir_dir DIR --pseudo_queries sentences --out FOLDER`"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("model") != data.encoder:
        raise DataError(
            f"{meta_path}: pseudo-queries embedded with {meta.get('model')!r} but the corpus "
            f"with {data.encoder!r}; embed them with the corpus's encoder"
        )
    ids = read_ids(folder / "query_ids.txt")
    x = load_embedding_matrix(folder / "queries.npy", ids)
    if x.shape[1] != data.dim:
        raise DataError(f"{folder / 'queries.npy'}: {x.shape[1]}-d, the corpus is {data.dim}-d")
    docs = set(data.corpus_ids)
    for row, i in enumerate(ids):
        if i.rsplit("#", 1)[0] not in docs:
            raise DataError(
                f"{folder / 'query_ids.txt'}:{row + 1}: {i!r} names no document of "
                f"{data.name}; these pseudo-queries come from another corpus"
            )
    if beir_dir is not None and (Path(beir_dir) / "corpus.jsonl").is_file():
        rows = read_jsonl(Path(beir_dir) / "corpus.jsonl")
        if text_fingerprint(rows, doc_text) != meta.get("corpus_fingerprint"):
            raise DataError(
                f"{meta_path}: the corpus texts in {beir_dir} changed since these pseudo-queries "
                f"were made; remove {folder} and make them again"
            )
    return x


def default_folder(cache: str | Path, data: RetrievalData, rule: str) -> Path:
    """Where pseudo-queries of ``data`` are kept by default: ``cache/<dataset>/<encoder>/<rule>``."""
    return Path(cache) / data.name / Path(data.encoder).name / rule


def attach(data: RetrievalData, data_cfg) -> RetrievalData:
    """``data`` with its pseudo-queries (``data.pseudo_queries``): read from
    ``data_cfg.pseudo_queries`` (a folder), else from the default folder under
    ``data_cfg.pseudo_cache``, made there first (with the corpus's encoder, by
    sentence-transformers) if missing; under the rule ``documents``, the corpus itself.
    Data that already carries them (synthetic) is returned as it is."""
    if data_cfg.pseudo_rule == DOCUMENTS:
        n = len(data.corpus_ids)
        source = f"{n} corpus documents as queries (each without itself)"
        return data.with_pseudo_queries(data.corpus, source, np.arange(n))
    if data.pseudo_queries is not None:
        return data
    beir_dir = Path(data.source_dir) if data.source_dir else None
    rule = data_cfg.pseudo_rule
    folder = Path(data_cfg.pseudo_queries or default_folder(data_cfg.pseudo_cache, data, rule))
    if not folder.is_dir():
        if beir_dir is None or not (beir_dir / "corpus.jsonl").is_file():
            raise DataError(
                f"{data.name} has no corpus texts to make pseudo-queries from, and {folder} "
                "does not exist; pass --config.data.pseudo_queries=FOLDER"
            )
        from smec_jax.datasets import encode

        model = encode.resolve_model(data_cfg.encoder_model or data.encoder)
        try:
            fn = encode.sentence_transformer_encoder(model)
        except DataError as e:
            raise DataError(
                f"no pseudo-queries at {folder}, and the encoder cannot make them ({e}); pass "
                "its local folder as --config.data.encoder_model=DIR, or make them with "
                f"`python -m launch.embed --beir_dir {beir_dir} --model DIR --pseudo_queries "
                f"{rule} --out {folder}`"
            ) from None
        print(f"embedding the pseudo-queries ({rule}) of {beir_dir} with {model} into {folder}")
        make(beir_dir, folder, fn, model_name=data.encoder, rule=rule)
    x = load(folder, data, beir_dir)
    return data.with_pseudo_queries(
        x, f"{len(x)} pseudo-queries ({rule}) of {data.name}", doc_rows(folder, data)
    )


def doc_rows(folder, data: RetrievalData) -> np.ndarray:
    """The corpus row of ``data`` each pseudo-query of ``folder`` was made from (its id is
    ``<doc id>#<part>``); :func:`load` has checked that every such document exists."""
    row = {d: i for i, d in enumerate(data.corpus_ids)}
    return np.array([row[i.rsplit("#", 1)[0]] for i in read_ids(Path(folder) / "query_ids.txt")])


def attach_for(cfg, data: RetrievalData) -> RetrievalData:
    """``data`` with pseudo-queries attached where ``cfg.train.unlabelled_queries`` asks for
    them (:func:`attach`), else ``data`` unchanged."""
    if "pseudo" not in cfg.train.unlabelled_queries:
        return data
    return attach(data, cfg.data)
