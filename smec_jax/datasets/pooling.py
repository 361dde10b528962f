"""Pooled training data: the labelled pairs of several corpora, plus unlabelled corpora.

A compressor of a frozen encoder can learn from every labelled corpus embedded with that
encoder, not only from the one it will serve. :func:`pool` joins embedded datasets
(:class:`smec_jax.datasets.data.RetrievalData`) into one training set:

* every part contributes its documents (ids prefixed ``"<part name>/"``, so ids of
  different corpora never collide);
* a labelled part also contributes the queries of its labelled split and their judgments,
  all under the pooled split ``"train"``;
* an unlabelled part (``split=None``) contributes documents only: the corpus that will be
  served, whose judgments must stay unread (its queries are never copied).

The pooled set trains like any dataset (``smec_jax.training.train.train``): validation is carved
from the pooled training queries, hard negatives are mined over the pooled corpus. A
compressor trained on a pool that holds no labels of a corpus is scored on that corpus
with :mod:`smec_jax.studies.analyses.pooled`.

Sentence-pair data joins as a labelled corpus too: :func:`sts_to_beir` writes the pairs of
an STS Benchmark file as a BEIR folder (first sentence = query, second = its relevant
document when the gold score reaches ``min_score``; every sentence of the file is a
document), which ``launch.embed --from_sts`` embeds.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from smec_jax.datasets.data import DataError, Qrels, RetrievalData

SPLIT = "train"  # the pooled judgments' split name
SEP = "/"


def pool(parts: Sequence[tuple[RetrievalData, str | None]], name: str = "") -> RetrievalData:
    """Joins ``(dataset, labelled split or None)`` pairs into one training dataset.

    Args:
      parts: each dataset once; ``split`` names the qrels split whose judged queries and
        judgments join the pool (``None``: its documents only).
      name: the pooled dataset's name; default ``pool(a:split+b+...)``.

    Returns:
      A RetrievalData whose corpus rows are the parts' corpora in order, whose queries are
      the judged queries of the labelled splits in order, and whose only qrels split is
      ``"train"``; every id is ``"<part name>/<id>"``.

    Raises:
      DataError: parts with different encoders or dimensions, a name given twice, a split a
        part does not have, or no labelled part at all.
    """
    if not parts:
        raise DataError("pool: no datasets given")
    first = parts[0][0]
    names = [d.name for d, _ in parts]
    for d, split in parts:
        if names.count(d.name) > 1:
            raise DataError(f"pool: dataset {d.name!r} is given twice; give each corpus once")
        if SEP in d.name:
            raise DataError(f"pool: dataset name {d.name!r} contains {SEP!r}; rename it")
        if (d.encoder, d.dim) != (first.encoder, first.dim):
            raise DataError(
                f"pool: {d.name} is embedded with {d.encoder} ({d.dim}-d) but {first.name} "
                f"with {first.encoder} ({first.dim}-d); pool embeddings of one encoder only"
            )
        if split is not None:
            d.qrels_for(split)  # names the splits it has
    if all(split is None for _, split in parts):
        raise DataError("pool: no part is labelled; give at least one dataset:split")

    corpus_ids, corpora, query_ids, queries, qrels = [], [], [], [], {}
    for d, split in parts:
        prefix = d.name + SEP
        corpus_ids += [prefix + i for i in d.corpus_ids]
        corpora.append(d.corpus)
        if split is None:
            continue
        judged = d.judged_queries(split)
        query_ids += [prefix + q for q in judged]
        queries.append(d.queries[d.query_rows(judged)])
        src: Qrels = d.qrels_for(split)
        for q in judged:
            qrels[prefix + q] = {prefix + doc: g for doc, g in src[q].items()}
    label = (
        name or "pool(" + "+".join(d.name if s is None else f"{d.name}:{s}" for d, s in parts) + ")"
    )
    return RetrievalData(
        name=label,
        encoder=first.encoder,
        corpus_ids=corpus_ids,
        corpus=np.concatenate(corpora),
        query_ids=query_ids,
        queries=np.concatenate(queries),
        qrels={SPLIT: qrels},
        source_dir="",
    )


def parse_sources(spec: str) -> list[tuple[str, str | None]]:
    """``"scifact:train,nfcorpus:train,dbpedia-entity-5k"`` -> [(name, split or None)]."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, split = item.partition(":")
        out.append((name.strip(), split.strip() or None))
    if not out:
        raise DataError(f"pool: no datasets in {spec!r}; use e.g. 'nfcorpus:train,scifact:train'")
    return out


def sts_to_beir(csv_path: str | Path, out_dir: str | Path, min_score: float = 4.0) -> Path:
    """Writes an STS Benchmark file (tab-separated, unquoted; fields 4, 5, 6 = gold score,
    sentence 1, sentence 2; extra source columns ignored) as a BEIR folder ``out_dir``.

    Each pair scoring at least ``min_score`` gives a query (sentence 1) whose relevant
    document is sentence 2 (``qrels/train.tsv``). The documents are the distinct sentences
    of the file, except a query's own text where it is nobody's relevant document (it would
    be an unjudged exact copy of the query). Written atomically (a temp folder, then one
    rename).
    """
    csv_path, out_dir = Path(csv_path), Path(out_dir)
    if out_dir.exists():
        raise DataError(f"{out_dir} already exists; remove it or choose another folder")
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: file not found (an STS Benchmark sts-*.csv file)")
    pairs = []  # (line number, score, sentence 1, sentence 2)
    with open(csv_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 7:
                raise DataError(
                    f"{csv_path}:{lineno}: {len(fields)} tab-separated fields, expected at "
                    "least 7 (genre, file, year, id, score, sentence 1, sentence 2)"
                )
            try:
                pairs.append((lineno, float(fields[4]), fields[5], fields[6]))
            except ValueError:
                raise DataError(
                    f"{csv_path}:{lineno}: score {fields[4]!r} is not a number"
                ) from None
    judged = [p for p in pairs if p[1] >= min_score]
    if not judged:
        raise DataError(f"{csv_path}: no pair scores {min_score} or more; lower min_score")
    query_texts = {p[2] for p in judged} - {p[3] for p in judged}
    docs: dict[str, str] = {}  # sentence -> doc id, first appearance first
    for _, _, *texts in pairs:
        for text in texts:
            if text not in query_texts:
                docs.setdefault(text, f"d{len(docs)}")
    queries = [{"_id": f"q{n}", "text": s1} for n, _, s1, _ in judged]
    qrels = [f"q{n}\t{docs[s2]}\t1\n" for n, _, _, s2 in judged]
    tmp = out_dir.with_name(out_dir.name + ".writing")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "qrels").mkdir(parents=True)
    corpus = [{"_id": i, "title": "", "text": t} for t, i in docs.items()]
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with open(tmp / name, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    (tmp / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(qrels), encoding="utf-8"
    )
    os.replace(tmp, out_dir)
    return out_dir
