"""An exported compressor (``compressor.npz``) read and applied with numpy alone: what serving
workers import (no JAX), and what :mod:`smec_jax.core.export` writes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def apply_numpy(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The model's forward pass in numpy alone (linear, or the residual MLP)."""
    x = np.asarray(x, np.float32)
    if "w1" in params:
        h = np.maximum(x @ params["w1"] + params["b1"], 0.0)
        return x + h @ params["w"] + params["b"]
    return x @ params["w"] + params["b"]


def npz_path(path: str | Path) -> Path:
    """``path``, or ``path/compressor.npz`` for a folder (``smec_jax.api``'s ``save``)."""
    path = Path(path)
    return path / "compressor.npz" if path.is_dir() else path


def load_numpy(path: str | Path) -> dict[str, np.ndarray]:
    """An exported compressor's arrays; one-line errors for anything that is not one."""
    path = npz_path(path)
    if not path.is_file():
        raise ValueError(f"{path}: compressor file not found; write it with launch.export")
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{path}: not a compressor .npz ({e}): a truncated or damaged copy? write it again "
            "with `python -m launch.export`"
        ) from None
    missing = {"w", "b", "sizes", "kind"} - set(out)
    if missing:
        raise ValueError(f"{path}: not a compressor .npz (no {', '.join(sorted(missing))})")
    return out


def input_dim(exported: dict[str, np.ndarray]) -> int:
    return int(exported["w1" if "w1" in exported else "w"].shape[0])


def is_asymmetric(exported: dict[str, np.ndarray]) -> bool:
    """Whether an exported compressor maps queries by a map of their own."""
    return "wq" in exported


def apply_exported(
    exported: dict[str, np.ndarray], x: np.ndarray, dim: int, queries: bool = False
) -> np.ndarray:
    """Numpy-only application of an exported compressor at size ``dim`` (unit vectors);
    ``queries``: map ``x`` as queries (the query map of an asymmetric compressor).

    The linear kind multiplies by the first ``dim`` columns only."""
    x = np.asarray(x, np.float32)
    if "w1" in exported:
        params = {k: exported[k] for k in ("w", "b", "w1", "b1")}
        y = apply_numpy(params, x)[:, :dim]
    else:
        w, b = ("wq", "bq") if queries and is_asymmetric(exported) else ("w", "b")
        y = x @ exported[w][:, :dim] + exported[b][:dim]
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
