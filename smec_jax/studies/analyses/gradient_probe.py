"""Gradient probe, MRL vs SMRL: is the small size's gradient larger and noisier under MRL?

:func:`gradient_probe` trains a schedule (``mrl`` = every size jointly, ``mrl_smrl`` =
sequentially) for the same number of steps and, once per epoch, takes the gradient of the
training loss on a few fixed probe batches. It reports the mean gradient magnitude of the
compressor columns kept for the smallest size and of the other columns, and the gradient
variance across the probe batches (the minibatch noise), over all columns and over the
small size's columns. The paper's argument: with every size's loss on the same columns
(MRL), the small size's columns get larger, noisier gradients than when sizes are trained
in sequence (SMRL).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from smec_jax import methods, parallel
from smec_jax.core import smrl
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation import reporting
from smec_jax.training import batches as batching
from smec_jax.training import checks, objective, state
from smec_jax.training.train import make_train_step

SCHEDULES = ("mrl", "mrl_smrl")


def _weight_grad_fn(loss_fn, rng):
    """Jitted ``(state, batch) -> dL/dW``: the gradient of the stage's loss w.r.t. the linear
    weight (D, N), as the optimizer sees it (frozen columns get zero)."""

    def grad_w(st, batch):
        tree = state.trainable(st)
        return jax.grad(lambda t: loss_fn(t, st, batch, rng)[0])(tree)["params"]["w"]

    return jax.jit(grad_w)


def grad_stats(g_bdn: np.ndarray, small: np.ndarray) -> dict[str, float]:
    """Statistics of (probe batches, D, N) gradients; ``small`` = the smallest size's columns."""
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
    Returns {"epoch": [...], "step": [...], "stage": [...], "mag_small": [...], ...}.
    """
    cfg = methods.get(method).resolve(cfg)
    sizes = checks.validate_trainer_config(cfg, data, 1)
    if cfg.model.kind != "linear" or cfg.ads.enabled or cfg.memory.enabled:
        raise ValueError(
            f"the gradient probe compares prefix schedules (mrl, mrl_smrl), not {method}"
        )
    mesh = parallel.data_mesh(1)
    train_q, _, batches = batching.supervised_input(cfg, data)
    sharding = NamedSharding(mesh, P(parallel.DATA))
    put = lambda b: parallel.put_batch(b, sharding)
    probe = [put(batches[10**6 + i]) for i in range(n_probe)]  # past any step trained here
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
    shardings = state.state_shardings(cfg, mesh)
    st = state.create_train_state(cfg, data.dim, sizes[0], sizes, data.corpus)
    out: dict[str, list] = {"epoch": [], "step": [], "stage": []}
    step = 0
    rng = jax.random.key(cfg.seed + 7)
    for stage, n_steps in plan:
        fresh_opt = state.make_optimizer(cfg).init(state.trainable(st))  # reset per stage
        st = jax.device_put(st.replace(opt_state=fresh_opt), shardings)
        step_fn = make_train_step(stage, cfg, sizes[0], mesh)
        grad_w = _weight_grad_fn(objective.make_loss_fn(stage, cfg, sizes[0], mesh), rng)
        for _ in range(n_steps):
            if step % epoch_steps == 0:
                grads = np.stack([np.asarray(grad_w(st, b)) for b in probe])
                out["epoch"].append(step // epoch_steps)
                out["step"].append(step)
                out["stage"].append(stage.index)
                for k, v in grad_stats(grads, small).items():
                    out.setdefault(k, []).append(v)
            st, _ = step_fn(st, put(batches[step]))
            step += 1
            if verbose and step % 100 == 0:
                print(f"gradient probe {method}: step {step}/{total}", flush=True)
    out["epoch_steps"] = epoch_steps
    return out


def plot(probes: dict[str, dict], path) -> None:
    plt = reporting.pyplot()
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
    reporting.save_figure(fig, path)


def run(config, ds, workdir, progress) -> dict:
    probes = {}
    for method in SCHEDULES:
        progress(f"gradient probe: {method}")
        probes[method] = gradient_probe(config, ds, method, verbose=True)
    plot(probes, workdir / "grad_variance.png")
    return probes


def markdown(section: dict, config) -> str:
    del config
    lines = [
        "| schedule | mean abs grad, smallest size's columns | other columns | "
        "grad variance, all columns | grad variance, smallest size's columns |",
        "|---|---|---|---|---|",
    ]
    for method, p in section.items():
        cells = [
            f"{np.mean(p[k]):.3g} ({p[k][0]:.3g} / {p[k][-1]:.3g})"
            for k in ("mag_small", "mag_other", "var_all", "var_small")
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n\n".join(
        [
            "## Gradient probe: MRL vs SMRL (grad_variance.png)",
            "Linear compressor, prefix sizes, no ADS/memory; both schedules train the same "
            "number of steps without early stopping; statistics on 4 fixed probe batches at "
            "the start of every epoch. Columns: mean over epochs (first / last epoch).",
            "\n".join(lines),
        ]
    )
