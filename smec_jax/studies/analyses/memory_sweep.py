"""S-XBM memory size: SMEC test nDCG@10 (seed 0) and train-step time per memory size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smec_jax.evaluation import reporting
from smec_jax.studies import profiling, reproduction


def shown_sizes(results: dict) -> list[int]:
    """The sizes the sweep shows: those of 128 and below (largest first)."""
    return sorted((int(d) for d in results if int(d) <= 128), reverse=True)


def step_ms(cfg, dim: int, repeats: int = 5) -> float:
    """Median milliseconds of the stage-1 train step at the config's batch and memory shape
    (memory full), timed as in ``launch.benchmark``: median of ``repeats`` x 10 steps."""
    step, st, batch = profiling.reference_step(
        cfg,
        dim=dim,
        batch_queries=cfg.train.batch_queries,
        docs_per_query=cfg.train.n_pos + cfg.train.n_hard,
        mem_size=cfg.memory.size,
        k=cfg.memory.k,
    )
    return 1000 * profiling.time_steps(step, st, batch, repeats)["median_s"] / 10


def plot(sweep: dict, path: Path) -> None:
    plt = reporting.pyplot()
    qs = [int(q) for q in sweep]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for d in shown_sizes(sweep[str(qs[0])]["results"]):
        for suffix, ls in (("", "-"), ("_unseen", "--")):
            vals = [sweep[str(q)]["results"][str(d)].get("ndcg@10" + suffix, np.nan) for q in qs]
            axes[0].plot(qs, vals, ls, marker="o", label=f"{d} dims{' unseen' if suffix else ''}")
    axes[0].set_xlabel("S-XBM memory size")
    axes[0].set_ylabel("test nDCG@10")
    axes[0].legend(fontsize=8)
    axes[1].plot(qs, [sweep[str(q)]["step_ms"] for q in qs], marker="o")
    axes[1].set_xlabel("S-XBM memory size")
    axes[1].set_ylabel("train step (ms, median)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    reporting.save_figure(fig, path)


def run(config, ds, workdir: Path, progress, memory_sizes=(1000, 2500, 5000, 10000, 15000)):
    out = {}
    for q in memory_sizes:
        progress(f"memory sweep: S-XBM size {q}")
        cfg = config.copy_and_resolve_references()
        cfg.memory.size = q
        run_dir = workdir / "analysis_runs" / "memory" / f"Q{q}"
        res, _ = reproduction.run_one(cfg, ds, "smec", 0, run_dir)
        out[str(q)] = {"results": res, "step_ms": step_ms(cfg, ds.dim)}
    plot(out, workdir / "memory_sweep.png")
    return out


def markdown(sweep: dict, config) -> str:
    del config
    shown = shown_sizes(next(iter(sweep.values()))["results"])
    lines = [
        "| memory | " + " | ".join(f"{d} all | {d} unseen" for d in shown) + " | step ms |",
        "|" + "---|" * (2 * len(shown) + 2),
    ]
    for q, v in sweep.items():
        r = v["results"]
        cells = []
        for d in shown:
            cells += [
                f"{r[str(d)]['ndcg@10']:.4f}",
                f"{r[str(d)].get('ndcg@10_unseen', float('nan')):.4f}",
            ]
        lines.append(f"| {q} | " + " | ".join(cells) + f" | {v['step_ms']:.1f} |")
    return "\n\n".join(
        [
            "## S-XBM memory size (memory_sweep.png)",
            "SMEC, seed 0, test nDCG@10 (all / unseen queries); step time = median of 5 x 10 "
            "steps of the stage-1 step at the config's batch shape.",
            "\n".join(lines),
        ]
    )
