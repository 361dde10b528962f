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
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from smec_jax import files
from smec_jax.core import model
from smec_jax.core.compressor import Compressor
from smec_jax.core.exported import (  # noqa: F401  (the numpy-only half, re-exported)
    apply_exported,
    input_dim,
    is_asymmetric,
    load_numpy,
    npz_path,
)
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
