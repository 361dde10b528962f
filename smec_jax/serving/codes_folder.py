"""A codes folder: ``codes.npy`` (one row per input row), ``ids.txt`` and ``manifest.json``;
or, written by ``launch.compress_beam``, code shards listed in the manifest.

The manifest says how the codes were made (compressor hash, source encoder and dimension,
size, precision, calibration, rows, bytes per vector); two folders are searched together
only when their settings agree (:func:`check_compatible`). :mod:`smec_jax.serving.compress`
writes such folders; the faiss index, the funnel and the evaluation read them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from smec_jax.datasets.data import DataError, read_ids

MANIFEST = "manifest.json"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a codes folder holds and how it was made."""

    compressor_sha256: str
    encoder: str
    input_dim: int
    size: int
    precision: str
    calibration: dict
    rows: int
    bytes_per_vector: int
    part: str
    source: str
    # shards (launch.compress_beam): [{"codes": file, "ids": file, "rows": n}] in row order;
    # empty: one codes.npy and ids.txt
    shards: list = dataclasses.field(default_factory=list)

    def settings(self) -> dict:
        """The fields two codes folders must share to be searched together."""
        return {
            "compressor_sha256": self.compressor_sha256,
            "input_dim": self.input_dim,
            "size": self.size,
        }


def read_manifest(folder: str | Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: not found; make the codes with `python -m launch.compress`")
    try:
        return Manifest(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise DataError(f"{path}: not a codes manifest ({e})") from None


def load_codes(folder: str | Path) -> tuple[np.ndarray, list[str], Manifest]:
    """(codes, ids, manifest) of a codes folder, checked against each other."""
    folder = Path(folder)
    man = read_manifest(folder)
    if man.shards:  # a sharded folder: read into memory, shard by shard
        parts = [read_shard(folder / s["codes"], folder / s["ids"], man) for s in man.shards]
        arr = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 0), np.uint8)
        ids = [i for p in parts for i in p[1]]
    else:
        arr = np.load(folder / "codes.npy", mmap_mode="r")
        ids = read_ids(folder / "ids.txt")
    if len(arr) != man.rows or len(ids) != man.rows:
        raise DataError(
            f"{folder}: {len(arr)} code rows and {len(ids)} ids but the manifest says {man.rows}"
        )
    return arr, ids, man


def read_shard(codes_file: Path, ids_file: Path, man: Manifest) -> tuple[np.ndarray, list[str]]:
    """(codes, ids) of one shard of a sharded folder: ``.npy`` with its ids file, or
    ``.parquet`` with ``id`` and ``code`` (each code row's bytes) columns."""
    from smec_jax.core import codes

    if codes_file.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(codes_file)
        dtype, width = codes.code_dtype_and_width(codes.Calibration.from_json(man.calibration))
        raw = b"".join(table.column("code").to_pylist())
        arr = np.frombuffer(raw, dtype).reshape(table.num_rows, width)
        return arr, [str(i) for i in table.column("id").to_pylist()]
    return np.load(codes_file, mmap_mode="r"), read_ids(ids_file)


def check_compatible(a: Manifest, b: Manifest, a_name: str, b_name: str) -> None:
    """Refuses to search codes made with different settings (one line, first difference).

    Documents ``a`` and queries ``b`` must share the compressor and size; quantized queries
    must also share the precision and calibration (symmetric scoring), while float queries
    may search quantized documents (asymmetric scoring).
    """
    keys = list(a.settings())
    if b.precision not in ("float32", "float16"):
        keys += ["precision", "calibration"]
    for key in keys:
        va, vb = getattr(a, key), getattr(b, key)
        if va != vb:
            shown = (va, vb) if key != "calibration" else ("one calibration", "another")
            raise DataError(
                f"{b_name} were made with {key} {shown[1]} but {a_name} with {shown[0]}; "
                "compress both with the same compressor and settings (--like)"
            )
