"""The Python API: your embeddings in, smaller vectors out (numpy in, numpy out).

    import smec_jax
    comp = smec_jax.fit(docs)                       # label-free, the method chosen for you
    comp = smec_jax.fit(docs, queries, qrels, sizes=(256, 128, 64, 32), method="auto")
    d64 = comp.encode_documents(docs, size=64, precision="int8")
    q64 = comp.encode_queries(query_emb, size=64)   # the query route of asymmetric maps
    comp.save("my_compressor/");  comp = smec_jax.load("my_compressor/")
    index = comp.to_faiss(docs, size=64, precision="int8", ids=doc_ids)

    comp = smec_jax.fit(docs, budget_bytes=32)      # auto picks the method and the code
    size, precision = comp.recommended["size"], comp.recommended["precision"]
    d = comp.encode_documents(docs, size, precision)               # 32 bytes per document
    scores = comp.encode_queries(q, size, precision) @ comp.decode_documents(d, size, precision).T

``fit`` is ``python -m launch.train`` on arrays: the same registered methods, config
(``configs/default.py`` with ``data.source = "arrays"``), validation split, checkpoints and
resume (give ``workdir``) and progress lines; ``method="auto"`` is
:mod:`smec_jax.methods.auto`. The fitted object is the exported nested map
(``compressor.npz``): what ``launch.compress``, ``launch.index``, ``launch.agreement`` and
the ONNX / sentence-transformers exports read, so a saved folder serves everywhere.

Quantized documents need a calibration (int8 ranges, binary thresholds): the first
``encode_documents`` call at a (size, precision) fits it on those documents (pass the whole
corpus first) and keeps it; later calls, ``to_faiss`` and ``save`` reuse it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from smec_jax import files
from smec_jax.core import codes, export
from smec_jax.datasets import arrays

SETTINGS = "smec.json"  # beside compressor.npz in a saved folder
NPZ = "compressor.npz"


@dataclasses.dataclass
class EmbeddingCompressor:
    """A fitted (or loaded) nested compressor.

    Attributes:
      exported: the arrays of ``compressor.npz`` (:mod:`smec_jax.core.export`).
      method: the method that fitted it (for ``auto``, the chosen one).
      info: what ``fit`` recorded (validation scores; ``auto``'s table), saved beside it.
      calibrations: ``"<size>/<precision>"`` -> calibration of quantized document codes.
    """

    exported: dict
    method: str = ""
    info: dict = dataclasses.field(default_factory=dict)
    calibrations: dict = dataclasses.field(default_factory=dict)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.exported["sizes"])

    @property
    def input_dim(self) -> int:
        return export.input_dim(self.exported)

    @property
    def recommended(self) -> dict | None:
        """With a byte budget (``fit(..., budget_bytes=)``): the code ``auto`` chose on
        validation, ``{"size", "precision", "bytes"}``; else None."""
        return self.info.get("auto", {}).get("point")

    @property
    def asymmetric(self) -> bool:
        """Whether queries have a map of their own (use :meth:`encode_queries` for them)."""
        return export.is_asymmetric(self.exported)

    def _check_size(self, size: int) -> int:
        if int(size) not in self.sizes:
            raise ValueError(f"size {size}: this compressor was trained for sizes {self.sizes}")
        return int(size)

    def _map(self, x, size: int, queries: bool, what: str) -> np.ndarray:
        x = arrays.unit_rows(x, what, self.input_dim)
        return export.apply_exported(self.exported, x, self._check_size(size), queries)

    def calibration(self, size: int, precision: str) -> codes.Calibration:
        """The kept calibration of (size, precision) document codes (see the module doc)."""
        codes.check_precision(precision)
        key = f"{int(size)}/{precision}"
        if key not in self.calibrations:
            raise ValueError(
                f"no {precision} calibration at size {size} yet: call "
                f"encode_documents(corpus, size={size}, precision={precision!r}) first"
            )
        return self.calibrations[key]

    def encode_documents(self, docs, size: int, precision: str = "float32") -> np.ndarray:
        """(n, D) document embeddings (array or .npy path) -> codes at ``size``: float32 /
        float16 unit vectors, uint8 (n, size) for int8, packed uint8 bits for binary. The
        first call at a quantized (size, precision) fits its calibration on these documents."""
        codes.check_precision(precision)
        y = self._map(docs, size, False, "docs")
        if precision == "float32":
            return y
        key = f"{int(size)}/{precision}"
        if key not in self.calibrations:
            self.calibrations[key] = codes.calibrate(y, precision)
        return codes.encode(y, self.calibrations[key])

    def encode_queries(self, queries, size: int, precision: str | None = None) -> np.ndarray:
        """(n, D) query embeddings -> (n, size) float32 unit vectors (the query map of an
        asymmetric compressor). With ``precision``, in the space of
        :meth:`decode_documents` at that precision (the ``binary_itq`` rotation applied), so
        ``encode_queries(q, s, p) @ decode_documents(codes, s, p).T`` scores float queries
        against coded documents."""
        q = self._map(queries, size, True, "queries")
        if precision in (None, "float32", "float16"):
            return q
        return codes.query_vectors(q, self.calibration(size, precision))

    def decode_documents(self, doc_codes, size: int, precision: str) -> np.ndarray:
        """Codes of :meth:`encode_documents` -> (n, size) float32 vectors as an index scores
        them (reconstructions; +-1 for binary), calibrated as they were encoded."""
        codes.check_precision(precision)
        if precision in ("float32", "float16"):
            return np.asarray(doc_codes, np.float32)
        return codes.decode(np.asarray(doc_codes), self.calibration(size, precision))

    def to_faiss(self, docs, size: int, precision: str = "float32", ids: Sequence | None = None):
        """A faiss index over ``docs`` at ``size``: exact inner product (``IndexFlatIP``) for
        float32/float16, faiss's 8-bit scalar quantizer for int8 (the same codes as
        :meth:`encode_documents`), ``IndexBinaryFlat`` for binary; wrapped in an
        ``IndexIDMap`` over integer ``ids`` where given (default: row numbers). Search it
        with :meth:`encode_queries` vectors (binary: binary query codes)."""
        from smec_jax.serving import faiss_index

        kinds = {"float32": "flat", "float16": "flat", "int8": "sq8", "binary": "binary"}
        if precision not in kinds:
            raise ValueError(f"precision {precision!r}: to_faiss takes {', '.join(kinds)}")
        kind = kinds[precision]
        y = self.encode_documents(docs, size, precision)
        if ids is not None:
            ids = faiss_index.checked_ids(ids, len(y))
        cal = self.calibrations.get(f"{size}/{precision}", codes.Calibration(precision, size))
        index = faiss_index.new_index(kind, int(size), cal)
        if ids is not None:
            faiss = faiss_index.faiss_module()
            index = (faiss.IndexBinaryIDMap if kind == "binary" else faiss.IndexIDMap)(index)
        faiss_index.add_codes(index, kind, y, ids)
        return index

    def save(self, path) -> Path:
        """Writes the folder ``path``: ``compressor.npz`` (what every serving command reads)
        and ``smec.json`` (method, fit record, calibrations). All or nothing: written aside,
        then renamed into place; an existing folder is replaced only if it is a saved
        compressor."""
        path = Path(path)
        if path.exists() and not (path / SETTINGS).is_file():
            if not path.is_dir() or any(path.iterdir()):
                raise ValueError(
                    f"{path} exists and is not a saved compressor; choose a new folder"
                )
        tmp = path.with_name(path.name + ".saving")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays_ = {k: np.asarray(v) for k, v in self.exported.items()}
        np.savez(tmp / NPZ, **arrays_)
        settings = {
            "method": self.method,
            "sizes": list(self.sizes),
            "input_dim": self.input_dim,
            "info": self.info,
            "calibrations": {k: c.to_json() for k, c in self.calibrations.items()},
        }
        (tmp / SETTINGS).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        if path.exists():
            old = path.with_name(path.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
        return path


def load(path) -> EmbeddingCompressor:
    """A compressor saved by :meth:`EmbeddingCompressor.save`, or any ``compressor.npz``
    (``launch.train`` / ``launch.export`` writes one)."""
    path = Path(path)
    from smec_jax.methods import pq

    if (path / pq.FILE).is_file() or path.name == pq.FILE:
        return pq.load(path)
    npz = path / NPZ if path.is_dir() else path
    if path.is_dir() and not npz.is_file():
        raise ValueError(f"{path}: no {NPZ} here; give a folder written by save() or a .npz")
    exported = export.load_numpy(npz)
    settings = {}
    if path.is_dir() and (path / SETTINGS).is_file():
        try:
            settings = json.loads((path / SETTINGS).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(
                f"{path / SETTINGS}: malformed JSON ({e}); save the compressor again"
            ) from None
    cals = {k: codes.Calibration.from_json(v) for k, v in settings.get("calibrations", {}).items()}
    return EmbeddingCompressor(exported, settings.get("method", ""), settings.get("info", {}), cals)


def fit(
    docs,
    queries=None,
    qrels: Mapping | str | Path | None = None,
    *,
    sizes: Sequence[int] = (256, 128, 64, 32),
    method: str = "auto",
    doc_ids=None,
    query_ids=None,
    workdir: str | Path | None = None,
    seed: int = 0,
    config=None,
    overrides: Mapping | None = None,
    budget_bytes: int | None = None,
    verbose: bool = True,
) -> EmbeddingCompressor:
    """Fits a nested compressor of ``docs`` (see the module docstring).

    Args:
      docs: (n, D) document embeddings: a numpy array or a ``.npy`` path (any D; rows are
        L2-normalised). queries: optional (m, D) query embeddings (a query log).
      qrels: optional training judgments ``{query id: {doc id: grade}}`` or a TSV path (ids
        default to row numbers as strings: "0", "1", ...); validation is carved from them.
      sizes: the output sizes, every one a prefix of the larger (at most D); for the
        learned product quantizers (``distill_pq``, ``distill_pq_docs``: the object returned
        is :class:`smec_jax.methods.pq.LearnedPQ`, of the same shape), bytes per document.
      method: a registered method (``docs/guide/methods.md``) or "auto".
      doc_ids, query_ids: ids of the rows (lists or ids files).
      workdir: checkpoints, metrics and ``auto.json`` go here; rerun to resume.
      seed: the run's seed. config: a config (``configs/default.py``'s ``get_config()`` or
        another file's) to start from. overrides: ``{"dotted.field": value}`` set on it.
      budget_bytes: bytes per stored document (``method="auto"`` only): every candidate is
        scored at each (size, precision) code within it and :attr:`~EmbeddingCompressor.
        recommended` names the best.
    """
    from smec_jax import methods

    data = arrays.from_arrays(docs, queries, qrels, doc_ids=doc_ids, query_ids=query_ids)
    cfg = fit_config(data, sizes, method, seed, config, overrides, budget_bytes)
    if workdir is not None:
        files.check_workdir(workdir)
    name, fitted, choice = methods.auto.fit_any(cfg, data, workdir, verbose=verbose)
    if getattr(fitted.compressor, "product_codes", False):  # a learned product quantizer
        return fitted.compressor
    nested = export.nested_of(fitted.compressor, cfg.ladder)
    if nested is None:
        raise ValueError(f"method {name!r} has no exportable nested map; use launch.train for it")
    exported = export.to_arrays(nested, "")
    exported["sizes"] = np.asarray(sizes, np.int64)
    info = {"val_ndcg": fitted.val_ndcg}
    if choice is not None:
        info["auto"] = choice.to_json()
    return EmbeddingCompressor(exported, name, info)


def fit_config(data, sizes, method="auto", seed=0, config=None, overrides=None, budget_bytes=None):
    """The config :func:`fit` trains ``data`` with (its arguments as there), validated."""
    from configs import default
    from smec_jax import methods
    from smec_jax.methods.registry import apply_overrides

    sizes = tuple(int(s) for s in sizes)
    if not sizes or any(s < 1 or s > data.dim for s in sizes) or len(set(sizes)) != len(sizes):
        raise ValueError(
            f"sizes {sizes}: give distinct sizes from 1 to the embedding size {data.dim}"
        )
    ladder = tuple(sorted({data.dim, *sizes}, reverse=True))
    cfg = (config or default.get_config()).copy_and_resolve_references()
    cfg.data.source = "arrays"
    cfg.ladder, cfg.seed, cfg.method = ladder, int(seed), method
    cfg.eval.methods = ()
    if method in methods.pq.NAMES:  # a learned product quantizer: sizes are bytes
        cfg.pq.bytes = sizes
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    if budget_bytes is not None:
        if method != "auto":
            raise ValueError(
                f"budget_bytes chooses among auto's candidates; use method='auto', not {method!r}"
            )
        cfg.auto.budget_bytes = int(budget_bytes)
    methods.validate(cfg)
    return cfg
