"""The reproduction report's analyses: the gradient probe (MRL vs SMRL) and ADS vs WARE.

* :func:`gradient_probe` trains a schedule (``mrl`` = every size jointly, ``mrl_smrl`` =
  sequentially) for the same number of steps and, once per epoch, takes the gradient of the
  training loss on a few fixed probe batches. It reports the mean gradient magnitude of the
  compressor columns kept for the smallest size and of the other columns, and the gradient
  variance across the probe batches (the minibatch noise), over all columns and over the
  small size's columns. The paper's argument: with every size's loss on the same columns
  (MRL), the small size's columns get larger, noisier gradients than when sizes are
  trained in sequence (SMRL).
* :func:`ware_importance` is the WARE importance of each dimension: the mean relative change
  of query-document cosine similarities when that dimension alone is removed.
  :func:`achievement_rate` is the share of a selected set of d dims that lies in the WARE
  top-d. :func:`ads_selection` trains ADS alone on the original embedding (identity
  compressor, frozen) so that its sets can be compared with prefix truncation.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from smec_jax import evaluation, parallel, retrieval, smrl, train
from smec_jax.data import RetrievalData
from smec_jax.retrieval import l2_normalize

# ============================================================================ gradient probe


def _weight_grad_fn(loss_fn, rng):
    """Jitted ``(state, batch) -> dL/dW``: the gradient of the stage's loss w.r.t. the linear
    weight (D, N), as the optimizer sees it (frozen columns get zero)."""

    def grad_w(state, batch):
        tree = train._trainable(state)
        return jax.grad(lambda t: loss_fn(t, state, batch, rng)[0])(tree)["params"]["w"]

    return jax.jit(grad_w)


def _grad_stats(g_bdn: np.ndarray, small: np.ndarray) -> dict[str, float]:
    mean_g = g_bdn.mean(axis=0)  # the gradient over all probe batches together
    col_mag = np.linalg.norm(mean_g, axis=0)  # (N,)
    other = np.ones(col_mag.shape, bool)
    other[small] = False
    var = g_bdn.var(axis=0)  # (D, N): variance across probe batches
    return {
        "mag_small": float(col_mag[small].mean()),
        "mag_other": float(col_mag[other].mean()),
        "var_all": float(var.mean()),
        "var_small": float(var[:, small].mean()),
    }


def gradient_probe(
    cfg, data: RetrievalData, method: str, n_probe: int = 4, verbose: bool = False
) -> dict:
    """Gradient statistics per epoch while training ``method`` (mrl or mrl_smrl, linear).

    Both schedules train (T stages) x ``steps_per_stage`` steps in all, with no early
    stopping, on the same batches; epoch = one pass over the training queries.
    Returns {"epochs": [...], "step": [...], "stage": [...], "mag_small": [...], ...}.
    """
    cfg = cfg.copy_and_resolve_references()
    cfg.method = method
    sizes = train.validate_config(cfg, data, 1)
    cfg = train.method_config(cfg)
    if cfg.model.kind != "linear" or cfg.ads.enabled or cfg.memory.enabled:
        raise ValueError(
            f"the gradient probe compares prefix schedules (mrl, mrl_smrl), not {method}"
        )
    mesh = parallel.data_mesh(1)
    train_q, _, batches = train.supervised_input(cfg, data)
    sharding = NamedSharding(mesh, P(parallel.DATA))
    put = lambda b: train._put_batch(b, sharding)
    probe = [
        put(batches[10**6 + i]) for i in range(n_probe)
    ]  # fixed batches past any step trained here
    epoch_steps = max(1, len(train_q) // cfg.train.batch_queries)
    n_stages = len(sizes) - 1
    total = n_stages * cfg.train.steps_per_stage
    if cfg.train.schedule == "joint":
        plan = [(smrl.joint_stage(sizes), total)]
    else:
        plan = [
            (smrl.make_stage(t, sizes, None), cfg.train.steps_per_stage)
            for t in range(1, n_stages + 1)
        ]
    small = np.arange(sizes[-1])  # prefix schedules: the smallest size keeps the first d_T columns
    shardings = train.state_shardings(cfg, mesh)
    state = train.create_train_state(cfg, data.dim, sizes[0], sizes, data.corpus)
    out: dict[str, list] = {"epoch": [], "step": [], "stage": []}
    step = 0
    rng = jax.random.key(cfg.seed + 7)
    for stage, n_steps in plan:
        fresh_opt = train.make_optimizer(cfg).init(train._trainable(state))  # reset per stage
        state = jax.device_put(state.replace(opt_state=fresh_opt), shardings)
        step_fn = train.make_train_step(stage, cfg, sizes[0], True, mesh)
        grad_w = _weight_grad_fn(train.make_loss_fn(stage, cfg, sizes[0], True, mesh), rng)
        for _ in range(n_steps):
            if step % epoch_steps == 0:
                grads = np.stack([np.asarray(grad_w(state, b)) for b in probe])
                stats = _grad_stats(grads, small)
                out["epoch"].append(step // epoch_steps)
                out["step"].append(step)
                out["stage"].append(stage.index)
                for k, v in stats.items():
                    out.setdefault(k, []).append(v)
            state, _ = step_fn(state, put(batches[step]))
            step += 1
            if verbose and step % 100 == 0:
                print(f"gradient probe {method}: step {step}/{total}", flush=True)
    out["epoch_steps"] = epoch_steps
    return out


def plot_gradient_probe(probes: dict[str, dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    styles = {"mrl": "-", "mrl_smrl": "--"}
    for method, p in probes.items():
        ls = styles.get(method, ":")
        axes[0].plot(
            p["epoch"], p["mag_small"], ls, color="C0", label=f"{method}: smallest size's columns"
        )
        axes[0].plot(p["epoch"], p["mag_other"], ls, color="C1", label=f"{method}: other columns")
        axes[1].plot(p["epoch"], p["var_all"], ls, color="C2", label=method)
        axes[2].plot(p["epoch"], p["var_small"], ls, color="C3", label=method)
    titles = (
        "mean gradient magnitude per column",
        "gradient variance across batches, all columns",
        "gradient variance, smallest size's columns",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    evaluation.save_figure(fig, path)


# ============================================================================ ADS vs WARE


def ware_importance(a_pd: np.ndarray, b_pd: np.ndarray) -> np.ndarray:
    """(N,) mean over pairs p of |cos(a_p, b_p without dim j) - cos(a_p, b_p)| / |cos(a_p, b_p)|.

    Removing dim j from both vectors: the dot loses a_j b_j, the squared norms lose a_j^2
    and b_j^2, so all N removals are computed at once (float64).
    """
    a, b = np.asarray(a_pd, np.float64), np.asarray(b_pd, np.float64)
    dot, na, nb = (a * b).sum(1), (a * a).sum(1), (b * b).sum(1)
    cos = dot / np.sqrt(na * nb)
    denom = np.sqrt(np.maximum((na[:, None] - a * a) * (nb[:, None] - b * b), 1e-300))
    cos_wo = (dot[:, None] - a * b) / denom
    rel = np.abs(cos_wo - cos[:, None]) / np.maximum(np.abs(cos[:, None]), 1e-12)
    return rel.mean(axis=0)


def ranking_pairs(
    data: RetrievalData, qids: list[str], k: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """(query, document) embedding pairs: each query with its top-k documents by the original
    embedding, the pairs whose similarities decide the ranking. No relevance labels used."""
    q = data.queries[data.query_rows(qids)]
    _, top = retrieval.search(q, data.corpus, k)
    top = np.asarray(top)
    a = np.repeat(q, k, axis=0)
    b = np.asarray(data.corpus)[top.reshape(-1)]
    return a, b


def top_dims(importance: np.ndarray, d: int) -> np.ndarray:
    return np.argsort(-importance, kind="stable")[:d]


def achievement_rate(selected: np.ndarray, importance: np.ndarray) -> float:
    """Share of the selected dims that are among the WARE top-|selected| dims."""
    d = len(selected)
    return len(set(map(int, selected)) & set(map(int, top_dims(importance, d)))) / d


def ads_selection(
    cfg, data: RetrievalData, workdir=None, early_stop: bool = True
) -> list[np.ndarray]:
    """S_0..S_T chosen by ADS alone on the original embedding: identity compressor that does
    not train (lr 0), zero-initialised logits, no memory; early stopping on validation as in
    training (zero logits select the prefix, so a stage that never beats it keeps the
    prefix), or, with ``early_stop=False``, the logits after the full step budget."""
    cfg = cfg.copy_and_resolve_references()
    if not early_stop:
        cfg.train.patience = 10**6
        cfg.train.eval_every = cfg.train.steps_per_stage
    cfg.method = "smec"
    cfg.model.update(kind="linear", init="identity", out_dim=0)
    cfg.train.lr = 0.0
    cfg.ads.update(enabled=True, init="zeros")
    cfg.memory.enabled = False
    return train.train(cfg, data, workdir, verbose=False).sets


@dataclasses.dataclass(frozen=True)
class DimSubset:
    """A compressor that keeps a chosen set of original dims per size (no transform)."""

    by_size: dict[int, np.ndarray]

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        return l2_normalize(jnp.asarray(x, jnp.float32)[:, np.sort(self.by_size[dim])])


def selection_compressors(
    sets: dict[str, list[np.ndarray]], importance: np.ndarray, variance: np.ndarray, sizes
) -> dict[str, DimSubset]:
    """Each way of picking original dims, as a compressor to score: the ADS selections, the
    prefix, the top-variance dims and the WARE top-d (an oracle on the pairs it was
    computed from, not a method)."""
    ranks = {
        "prefix": np.arange(sizes[0]),
        "top_variance": np.argsort(-variance, kind="stable"),
        "ware_top": top_dims(importance, sizes[0]),
    }
    out = {name: DimSubset(dict(zip(sizes, s, strict=True))) for name, s in sets.items()}
    out |= {name: DimSubset({d: r[:d] for d in sizes}) for name, r in ranks.items()}
    return out


def ads_table(
    data: RetrievalData, sets: dict[str, list[np.ndarray]], sizes, qids: list[str]
) -> dict:
    """Achievement rate per size of each ADS selection in ``sets`` (name -> S_0..S_T),
    prefix truncation and the top-variance dims, against the WARE ranking of the original
    dims on (training query, top-20 document) pairs."""
    a, b = ranking_pairs(data, qids)
    imp = ware_importance(a, b)
    variance = np.asarray(data.corpus, np.float64).var(axis=0)
    var_rank = np.argsort(-variance, kind="stable")
    rows = {}
    for i, d in enumerate(sizes[1:], start=1):
        rows[str(d)] = {name: achievement_rate(s[i], imp) for name, s in sets.items()}
        rows[str(d)] |= {
            "prefix": achievement_rate(np.arange(d), imp),
            "top_variance": achievement_rate(var_rank[:d], imp),
        }
    return {
        "importance": imp.tolist(),
        "variance": variance.tolist(),
        "achievement_rate": rows,
        "pairs": len(a),
    }
