"""An embedded retrieval dataset as a tensorflow-datasets ``array_record`` dataset.

TensorFlow is not needed: tfds writes ``array_record`` files and reads them back as
random-access data sources, which grain turns into (shuffled, sharded) pipelines.

Layout: every record has the same features ::

  id            text      document or query id
  row           int64     row in the original embedding file (restores the order)
  embedding     float32   (D,) L2-normalised
  judged_ids    text[]    judged doc ids (queries only)
  judged_grades int32[]   their grades

Splits: ``corpus`` (documents, no judgments) and one split per qrels split (``train``,
``test``, ...) holding that split's judged queries with their judgments.
"""

from __future__ import annotations

from pathlib import Path

import grain
import numpy as np
import tensorflow_datasets as tfds

from smec_jax.datasets.data import DataError, RetrievalData

CORPUS = "corpus"


class EmbeddedRetrieval(tfds.core.GeneratorBasedBuilder):
    """tfds builder over an in-memory :class:`RetrievalData` (the writing side)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Embeddings, ids and graded qrels per split."}

    def __init__(self, *, retrieval_data: RetrievalData, **kwargs):
        self._rd = retrieval_data
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self._rd.name} embedded with {self._rd.encoder}",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "row": np.int64,
                    "embedding": tfds.features.Tensor(shape=(self._rd.dim,), dtype=np.float32),
                    "judged_ids": tfds.features.Sequence(tfds.features.Text()),
                    "judged_grades": tfds.features.Sequence(np.int32),
                }
            ),
            metadata=tfds.core.MetadataDict(dataset=self._rd.name, encoder=self._rd.encoder),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        splits = {CORPUS: self._generate_examples(None)}
        splits |= {s: self._generate_examples(s) for s in self._rd.qrels}
        return splits

    def _generate_examples(self, split: str | None):
        rd = self._rd
        if split is None:
            for row, (i, x) in enumerate(zip(rd.corpus_ids, rd.corpus, strict=True)):
                yield (
                    i,
                    {"id": i, "row": row, "embedding": x, "judged_ids": [], "judged_grades": []},
                )
            return
        qrels = rd.qrels[split]
        for row, (q, x) in enumerate(zip(rd.query_ids, rd.queries, strict=True)):
            if q in qrels:
                yield (
                    q,
                    {
                        "id": q,
                        "row": row,
                        "embedding": x,
                        "judged_ids": list(qrels[q]),
                        "judged_grades": list(qrels[q].values()),
                    },
                )


def write_tfds(rd: RetrievalData, data_dir: str | Path) -> Path:
    """Writes ``rd`` as array_record under ``data_dir``; returns the dataset's version folder.

    tfds writes into a temporary folder and renames it when complete, so an interrupted
    build leaves no half-written dataset that a reader could pick up.
    """
    builder = EmbeddedRetrieval(
        retrieval_data=rd, data_dir=str(data_dir), file_format="array_record"
    )
    builder.download_and_prepare()
    return Path(builder.data_dir)


def _version_dir(path: str | Path) -> Path:
    path = Path(path)
    if (path / "dataset_info.json").is_file():
        return path
    found = sorted(path.glob("**/dataset_info.json"))
    if len(found) != 1:
        raise DataError(
            f"{path}: expected one tfds dataset (a folder with dataset_info.json), found "
            f"{len(found)}; build one with `python -m launch.prepare`"
        )
    return found[0].parent


def data_source(path: str | Path, split: str):
    """The random-access tfds data source of one split (grain reads it directly)."""
    builder = tfds.builder_from_directory(str(_version_dir(path)))
    if split not in builder.info.splits:
        raise DataError(f"{path}: no split {split!r}; splits: {sorted(builder.info.splits)}")
    return builder.as_data_source(split=split)


def _read_split(path: Path, split: str) -> list[dict]:
    records = list(grain.MapDataset.source(data_source(path, split)))
    return sorted(records, key=lambda r: int(r["row"]))


def _text(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def read_tfds(path: str | Path) -> RetrievalData:
    """Reads a dataset written by :func:`write_tfds` back into memory, in original row order."""
    vdir = _version_dir(path)
    builder = tfds.builder_from_directory(str(vdir))
    meta = dict(builder.info.metadata or {})
    corpus = _read_split(vdir, CORPUS)
    queries: dict[int, dict] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in builder.info.splits:
        if split == CORPUS:
            continue
        qrels[split] = {}
        for r in _read_split(vdir, split):
            queries[int(r["row"])] = r
            ids = [_text(d) for d in r["judged_ids"]]
            qrels[split][_text(r["id"])] = dict(zip(ids, map(int, r["judged_grades"]), strict=True))
    qrows = [queries[k] for k in sorted(queries)]
    return RetrievalData(
        name=str(meta.get("dataset", vdir.parent.name)),
        encoder=str(meta.get("encoder", "unknown")),
        corpus_ids=[_text(r["id"]) for r in corpus],
        corpus=np.stack([r["embedding"] for r in corpus]).astype(np.float32),
        query_ids=[_text(r["id"]) for r in qrows],
        queries=np.stack([r["embedding"] for r in qrows]).astype(np.float32),
        qrels=qrels,
    )
