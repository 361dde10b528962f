"""Where a config's dataset comes from: one dispatch table above the data modules.

``data.source`` names a loader: "beir" (``root/dataset`` with ``embeddings/<encoder>``),
"arrays" (plain ``.npy`` matrices, ids files and qrels TSVs: :mod:`smec_jax.datasets.arrays`),
"tfds" (an array_record dataset written by :mod:`smec_jax.datasets.tfds_dataset` at ``tfds_dir``) or
"synthetic" (generated in memory from ``synthetic``). The leaves (:mod:`smec_jax.datasets.data`,
:mod:`smec_jax.datasets.synthetic`, :mod:`smec_jax.datasets.tfds_dataset`) never import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from smec_jax.datasets import data
from smec_jax.datasets.data import BEIR_HINT, DataError, RetrievalData


def _beir(cfg) -> RetrievalData:
    root = Path(cfg.root)
    if not (root / cfg.dataset).is_dir():
        raise DataError(f"data folder {root / cfg.dataset} not found; {BEIR_HINT}")
    return data.load_embedded(root / cfg.dataset, cfg.encoder)


def _arrays(cfg) -> RetrievalData:
    from smec_jax.datasets import arrays

    return arrays.load(cfg)


def _tfds(cfg) -> RetrievalData:
    from smec_jax.datasets.tfds_dataset import (
        read_tfds,  # imports tensorflow_datasets: only when used
    )

    return read_tfds(cfg.tfds_dir)


def _synthetic(cfg) -> RetrievalData:
    from smec_jax.datasets.synthetic import make_synthetic

    return make_synthetic(**cfg.synthetic.to_dict())


SOURCES: dict[str, Callable[..., RetrievalData]] = {
    "beir": _beir,
    "arrays": _arrays,
    "tfds": _tfds,
    "synthetic": _synthetic,
}


def load(data_cfg) -> RetrievalData:
    """The dataset a config's ``data`` block names."""
    if data_cfg.source not in SOURCES:
        raise DataError(f"unknown data.source {data_cfg.source!r}; use one of {', '.join(SOURCES)}")
    return SOURCES[data_cfg.source](data_cfg)
