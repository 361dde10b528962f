"""Nested export: a trained SMEC compressor as one Matryoshka map that numpy alone applies.

The output columns are reordered S_T, S_{T-1} \\ S_T, ..., S_0 \\ S_1 (DESIGN.md 2.5), so the
size-d embedding is the first d coordinates of one vector: any MRL-aware vector store can
truncate it. The file is a plain ``.npz`` (no pickles): ``w`` (D, N) and ``b`` (N,) with
permuted columns (plus ``w1``, ``b1`` for the residual MLP; plus the query map ``wq``,
``bq``, permuted alike, for an asymmetric compressor: queries are ``q @ wq + bq``),
``sizes``, ``kind``.

    import numpy as np
    f = np.load("compressor.npz")
    y = x @ f["w"] + f["b"]                       # linear kind
    y = y[:, :128]; y /= np.linalg.norm(y, axis=1, keepdims=True)
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from smec_jax import files
from smec_jax.core import model
from smec_jax.core.compressor import Compressor
from smec_jax.core.retrieval import l2_normalize


@dataclasses.dataclass(frozen=True)
class NestedCompressor(Compressor):
    """Compressor whose size-d output is the first d of the permuted outputs.

    Attributes:
      params: model params (jax or numpy arrays). order: (N,) output permutation.
      sizes: the trained sizes.
    """

    params: dict
    order: np.ndarray
    sizes: tuple[int, ...]
    nests = True

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        y = model.apply_cols(
            jax.tree.map(jnp.asarray, self.params), jnp.asarray(x, jnp.float32), self.order[:dim]
        )
        return l2_normalize(y)

    def compress_queries(self, x: jax.Array, dim: int) -> jax.Array:
        """Queries at size ``dim``: by the query map of an asymmetric compressor, else as
        documents."""
        if not model.is_asymmetric(self.params):
            return self.compress(x, dim)
        side = model.query_side(jax.tree.map(jnp.asarray, self.params))
        return l2_normalize(model.apply_cols(side, jnp.asarray(x, jnp.float32), self.order[:dim]))

    def nested_map(self) -> NestedCompressor:
        return self

    def permuted_params(self) -> dict[str, np.ndarray]:
        p = model.to_numpy(self.params)
        for k in model.COLUMN_PARAMS:
            if k in p:
                p[k] = p[k][..., self.order]
        return p


def nested_of(comp: Compressor, sizes) -> NestedCompressor | None:
    """The exportable nested map of ``comp``: its own (:meth:`Compressor.nested_map`), else
    that of a closed-form compressor with an ``as_nested(sizes)`` (PCA, truncation), else
    None (e.g. a sparse code)."""
    nested = comp.nested_map()
    if nested is None and hasattr(comp, "as_nested"):
        nested = comp.as_nested(tuple(int(d) for d in sizes))
    return nested


def original(dim: int) -> NestedCompressor:
    """The identity nested map of ``dim``-d embeddings, one size: its output is the original
    embedding, L2-normalised. Exported, it lets ``launch.compress`` write the original
    vectors as codes, e.g. for a funnel that rescores a compressor's shortlist with them."""
    if dim < 1:
        raise ValueError(f"an original-embedding map needs dim >= 1, not {dim}")
    eye = {"w": np.eye(dim, dtype=np.float32), "b": np.zeros(dim, np.float32)}
    return NestedCompressor(eye, np.arange(dim), (dim,))


def save(comp: NestedCompressor, path: str | Path, encoder: str = "") -> Path:
    """Writes the permuted compressor as .npz (atomically); ``encoder`` names the model whose
    embeddings it takes (recorded for the serving tools' checks)."""
    buf = io.BytesIO()
    np.savez(buf, **to_arrays(comp, encoder))
    files.atomic_write(path, buf.getvalue())
    return Path(path)


def to_arrays(comp: NestedCompressor, encoder: str = "") -> dict[str, np.ndarray]:
    """The arrays ``compressor.npz`` holds (what :func:`load_numpy` returns), in memory."""
    p = comp.permuted_params()
    kind = "residual_mlp" if "w1" in p else "linear"
    meta = {"kind": np.asarray(kind), "sizes": np.asarray(comp.sizes, np.int64)}
    return {"encoder": np.asarray(encoder), **meta, **p}


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
        y = model.apply_numpy(params, x)[:, :dim]
    else:
        w, b = ("wq", "bq") if queries and is_asymmetric(exported) else ("w", "b")
        y = x @ exported[w][:, :dim] + exported[b][:dim]
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
