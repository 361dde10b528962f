"""The compressor: a map from D-dim original embeddings to N output dims (before selection).

Parameters are a plain pytree (dict of arrays); the forward pass is a pure function. Two
kinds (DESIGN.md 2.1):

* ``linear``: y = x W + b, W (D, N) initialised to the identity (N = D by default), so the
  first stage starts from the original embedding.
* ``residual_mlp``: y = x + relu(x W1 + b1) W2 + b2 (as Matryoshka-Adaptor), N = D, W2 and
  b2 zero-initialised so it too starts at the identity.

An *asymmetric* linear compressor (``model.asymmetric``) has a second map for queries,
``wq`` and ``bq``, with the same output dims: documents are stored as ``x W + b`` and
queries are mapped by ``q Wq + bq`` at search time. Both start equal; the output dims, the
stages, the selection and the nesting are shared, so every size is a prefix of both.

Freezing (DESIGN.md 2.3) works on *output columns*: ``freeze_columns`` returns the params
with the columns of frozen output dims passed through ``stop_gradient``. For the linear map
this freezes those dims completely (in both maps); for the residual MLP only their
last-layer columns are frozen (the hidden layer is shared by all dims).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, jax.Array]
KINDS = ("linear", "residual_mlp")
# Parameters with one column per output dim (frozen, gathered and permuted by column).
COLUMN_PARAMS = ("w", "b", "wq", "bq")


def init_params(
    rng: jax.Array, kind: str, in_dim: int, out_dim: int, hidden: int, asymmetric: bool = False
) -> Params:
    """Identity-initialised parameters of the given kind (with an equal query map ``wq``,
    ``bq`` when ``asymmetric``)."""
    if kind == "linear":
        w = jnp.eye(in_dim, out_dim, dtype=jnp.float32)
        b = jnp.zeros((out_dim,), jnp.float32)
        return {"w": w, "b": b} | (_query_copy(w, b) if asymmetric else {})
    if asymmetric:
        raise ValueError("model.asymmetric needs model.kind='linear'")
    if kind == "residual_mlp":
        if out_dim != in_dim:
            raise ValueError(f"residual_mlp needs out_dim == in_dim ({in_dim}), got {out_dim}")
        scale = 1.0 / np.sqrt(in_dim)
        return {
            "w1": scale * jax.random.normal(rng, (in_dim, hidden), jnp.float32),
            "b1": jnp.zeros((hidden,), jnp.float32),
            "w": jnp.zeros((hidden, out_dim), jnp.float32),
            "b": jnp.zeros((out_dim,), jnp.float32),
        }
    raise ValueError(f"unknown model kind {kind!r}; use one of {KINDS}")


def pca_init(params: Params, corpus_nd: np.ndarray) -> Params:
    """Linear params set to the centred PCA rotation of the corpus: y = (x - mean) V.

    V is orthonormal, so at full size this only centres the embeddings; the leading output
    dims are the principal components (what the PCA baseline keeps).
    """
    if "w1" in params:
        raise ValueError("model.init='pca' needs model.kind='linear'")
    x = np.asarray(corpus_nd, np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    out_dim = params["w"].shape[1]
    if vt.shape[0] < out_dim:
        raise ValueError(f"model.init='pca' needs at least {out_dim} corpus rows, got {x.shape[0]}")
    v = vt[:out_dim].T
    w, b = jnp.asarray(v, jnp.float32), jnp.asarray(-mean @ v, jnp.float32)
    return {"w": w, "b": b} | (_query_copy(w, b) if "wq" in params else {})


def _query_copy(w: jax.Array, b: jax.Array) -> Params:
    """A query map equal to (w, b) in separate buffers (a donated state may not hold one
    buffer twice)."""
    return {"wq": jnp.array(w, copy=True), "bq": jnp.array(b, copy=True)}


def is_asymmetric(params: Params) -> bool:
    return "wq" in params


def query_side(params: Params) -> Params:
    """The map queries go through: ``{w: wq, b: bq}`` for an asymmetric compressor, else
    the params themselves."""
    if "wq" in params:
        return {"w": params["wq"], "b": params["bq"]}
    return params


def apply(params: Params, x_bd: jax.Array) -> jax.Array:
    """(B, D) original embeddings -> (B, N) outputs."""
    if "w1" in params:
        h = jax.nn.relu(x_bd @ params["w1"] + params["b1"])
        return x_bd + h @ params["w"] + params["b"]
    return x_bd @ params["w"] + params["b"]


def apply_cols(params: Params, x_bd: jax.Array, cols: np.ndarray | None) -> jax.Array:
    """(B, D) -> (B, len(cols)): only the output dims ``cols`` (static indices; None = all).

    For the linear map this multiplies by W[:, cols] only, so later stages (fewer kept
    dims) cost proportionally less.
    """
    if cols is None:
        return apply(params, x_bd)
    if "w1" in params:
        return apply(params, x_bd)[:, cols]
    return x_bd @ params["w"][:, cols] + params["b"][cols]


def column_view(params: Params, cols: np.ndarray) -> tuple[Params, np.ndarray | None]:
    """``(view, rest)`` with ``apply_cols(view, x, rest) == apply_cols(params, x, cols)``.

    For the linear map the view holds W[:, cols] and b[cols], gathered once: a loss that
    applies the compressor to several inputs then gathers (and, in the backward pass,
    scatters) the columns once instead of once per input. When ``cols`` are all the
    outputs in order, the params themselves.
    """
    n_out = params["w"].shape[1]
    if np.array_equal(cols, np.arange(n_out)):
        return params, None
    if "w1" in params:
        return params, cols
    return {k: v[..., cols] for k, v in params.items()}, None


def freeze_columns(params: Params, trainable_n: np.ndarray) -> Params:
    """Params whose output columns outside ``trainable_n`` (bool (N,)) get no gradient.

    W_eff = m * W + (1 - m) * stop_gradient(W): values are unchanged, gradients of frozen
    columns are exactly zero.
    """
    m = jnp.asarray(trainable_n, jnp.float32)
    out = dict(params)
    for name in COLUMN_PARAMS:
        if name in params:
            p = params[name]
            out[name] = m * p + (1.0 - m) * jax.lax.stop_gradient(p)
    return out


def column_update_mask(params: Params, trainable_n: np.ndarray) -> dict[str, Any]:
    """Multiplicative mask for optimizer updates: 1 on trainable columns, 0 on frozen ones.

    Applied after the optimizer, so no transform (momentum, weight decay) can move a frozen
    column, even with state carried from an earlier stage.
    """
    m = jnp.asarray(trainable_n, jnp.float32)
    return {name: (m if name in COLUMN_PARAMS else jnp.ones((), jnp.float32)) for name in params}


def replace_params(fresh: Params, given: dict) -> Params:
    """``given`` as float32 arrays, checked to have ``fresh``'s names and shapes (a second
    training phase starting from the first's params)."""
    if set(given) != set(fresh):
        raise ValueError(f"init params {sorted(given)} do not match the model's {sorted(fresh)}")
    out = {}
    for k, v in fresh.items():
        if np.shape(given[k]) != v.shape:
            raise ValueError(f"init param {k!r} has shape {np.shape(given[k])}, expected {v.shape}")
        out[k] = jnp.array(given[k], jnp.float32, copy=True)
    return out


def to_numpy(params: Params) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in params.items()}
