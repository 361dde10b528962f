"""Search-Adaptor (Yoon et al. 2024): one linear adaptor per target size.

Each size below N gets its own linear map, trained by the same trainer with the rank loss
at that size only plus L1 reconstruction (a run each, resumable in ``workdir/size_D``); the
full size is the original embedding. The maps do not nest, so there is no single export.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from smec_jax.core import model, smrl
from smec_jax.core.compressor import Compressor
from smec_jax.core.export import NestedCompressor
from smec_jax.methods.registry import Fitted, Method, apply_overrides, register
from smec_jax.methods.trainer import MRL
from smec_jax.training import train

OVERRIDES = {
    **MRL,
    "adaptor.enabled": True,
    "adaptor.topk_weight": 0.0,  # Search-Adaptor keeps only the reconstruction term
    "adaptor.pair_weight": 0.0,
    "train.full_weight": 0.0,  # the rank loss at the target size only
    "model.init": "identity",
}


@dataclasses.dataclass(frozen=True)
class PerSizeCompressor(Compressor):
    """One separately trained compressor per size."""

    by_size: dict[int, NestedCompressor]

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        if dim not in self.by_size:
            raise ValueError(f"no adaptor trained for size {dim}; sizes {sorted(self.by_size)}")
        return self.by_size[dim].compress(x, dim)


def fit_search_adaptor(cfg, data, workdir=None, *, verbose: bool = True) -> Fitted:
    """Trains one adaptor per ladder size below N; the full size is the identity map."""
    cfg = apply_overrides(cfg, OVERRIDES)
    sizes = smrl.sizes_for(cfg.ladder, cfg.model.out_dim or data.dim)
    by_size, val = {}, {}
    for d in sizes[1:]:
        c = cfg.copy_and_resolve_references()
        c.ladder = (sizes[0], d)
        run_dir = Path(workdir) / f"size_{d}" if workdir else None
        res = train.train(c, data, run_dir, verbose=verbose)
        by_size[d], val[str(d)] = res.compressor, res.val_ndcg[str(d)]
    ident = model.init_params(jax.random.key(0), "linear", data.dim, sizes[0], 0)
    by_size[sizes[0]] = NestedCompressor(model.to_numpy(ident), np.arange(sizes[0]), (sizes[0],))
    val[str(sizes[0])] = float("nan")
    return Fitted(PerSizeCompressor(by_size), val)


register(
    Method(
        "search_adaptor",
        "peer",
        True,
        fit_search_adaptor,
        OVERRIDES,
        "one linear adaptor per size, rank loss + L1 reconstruction",
    )
)
