"""Reporting: the one results format, tables, markdown, plots, and aggregation over seeds.

``results.json``::

  {"dataset": ..., "encoder": ..., "split": ...,
   "results": {method: {size: {"ndcg@10", "recall@100", "mrr@10",
                               "ndcg@10_unseen", "recall@100_unseen", "mrr@10_unseen",
                               "bytes_per_vector"}}}}

Sizes are strings; ``bytes_per_vector`` is a float32 document's cost (every precision and
funnel of each method is in ``launch.pareto``'s ``pareto.json``). The ``_unseen`` metrics are over the test queries none of whose relevant
docs is judged relevant for any training query (DESIGN.md section 3). Aggregates over seeds
add ``<metric>_std`` beside each mean.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from smec_jax import files
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation import stats


def results_document(
    data: RetrievalData, split: str, results: Mapping, unseen_queries: int | None = None
) -> dict:
    """The results.json document; ``unseen_queries`` (how many test queries the ``_unseen``
    metrics average over) is recorded when given."""
    doc = {"dataset": data.name, "encoder": data.encoder, "split": split, "results": results}
    if unseen_queries is not None:
        doc["unseen_queries"] = unseen_queries
        if "train" not in data.qrels and split != "train":
            doc["unseen_rule"] = ALL_UNSEEN
    return doc


ALL_UNSEEN = "no training judgments: every test query is unseen"


def verdict(
    method: str, size: int, ladder, per_query: Mapping, unseen_mask, baselines=("pca", "truncate")
) -> dict:
    """The trained method at ``size`` against each baseline (of ``per_query``, from
    :meth:`~smec_jax.evaluation.evaluator.Evaluator.evaluate`) on all and on unseen test
    queries: means and the paired bootstrap 95% interval of the difference."""
    row = list(ladder).index(size)
    mask = np.asarray(unseen_mask, bool)
    mine = per_query[method][row]
    out = {"method": method, "size": size, "all": float(mine.mean()), "versus": {}}
    if mask.any():
        out["unseen"] = float(mine[mask].mean())
    for b in baselines:
        if b == method or b not in per_query:
            continue
        theirs = per_query[b][row]
        v = {"all": stats.paired_bootstrap(mine, theirs)}
        if mask.any():
            v["unseen"] = stats.paired_bootstrap(mine[mask], theirs[mask])
        out["versus"][b] = v
    return out


def verdict_lines(v: Mapping) -> str:
    """The verdict in a few lines: the method's score, then one line per baseline."""
    unseen = f", {v['unseen']:.3f} on unseen" if "unseen" in v else ""
    lines = [
        f"verdict: {v['method']} at {v['size']} dims: nDCG@10 {v['all']:.3f} on all test queries{unseen}"
    ]
    for b, r in v["versus"].items():
        parts = [
            f"{k} {r[k]['diff']:+.3f} [{r[k]['lo']:+.3f}, {r[k]['hi']:+.3f}]"
            for k in ("all", "unseen")
            if k in r
        ]
        lines.append(f"  vs {b}: " + ", ".join(parts) + " (paired 95% interval)")
    return "\n".join(lines)


def budget_lines(b: Mapping) -> str:
    """:func:`smec_jax.methods.auto.budget_on_test` in a few lines."""
    c = b["candidates"][b["chosen"]]
    unseen = f", {c['unseen']:.3f} on unseen" if "unseen" in c else ""
    lines = [
        f"at {b['budget_bytes']} B per document: {b['chosen']} {c['point']} nDCG@10 "
        f"{c['all']:.3f} on all test queries{unseen}"
    ]
    v = b.get("versus")
    if v:
        parts = [
            f"{k} {v[k]['diff']:+.3f} [{v[k]['lo']:+.3f}, {v[k]['hi']:+.3f}]"
            for k in ("all", "unseen")
            if k in v
        ]
        lines.append(
            f"  vs {v['method']} {v['point']} (the best free code on validation): "
            + ", ".join(parts)
            + " (paired 95% interval)"
        )
    return "\n".join(lines)


NO_UNSEEN = (
    "no unseen test queries: every test query has a relevant document that is also judged "
    "relevant for a training query, so only all-query scores are reported"
)


def has_unseen(results: Mapping, metric: str = "ndcg@10") -> bool:
    return any(f"{metric}_unseen" in v for r in results.values() for v in r.values())


def write_results(workdir: str | Path, document: Mapping) -> Path:
    path = Path(workdir) / "results.json"
    return files.write_json(path, document)


def report(document: Mapping, workdir: str | Path) -> None:
    """Prints the table and writes ``results.json`` and ``ndcg_vs_dim.png`` into ``workdir``."""
    print(format_table(document))
    write_results(workdir, document)
    plot_results(document, Path(workdir) / "ndcg_vs_dim.png")
    print(f"wrote {workdir}/results.json and ndcg_vs_dim.png")


def aggregate(per_seed: Sequence[Mapping]) -> dict:
    """Mean over seeds with ``<metric>_std`` (0 for a single run) for every size and metric."""
    out = {}
    for size in per_seed[0]:
        row = {}
        for metric in per_seed[0][size]:
            vals = [r[size][metric] for r in per_seed]
            row[metric] = statistics.mean(vals)
            row[f"{metric}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out[size] = row
    return out


def sizes_of(results: Mapping) -> list[int]:
    """Every size any method was scored at, largest first."""
    return sorted({int(s) for r in results.values() for s in r}, reverse=True)


# ---------------------------------------------------------------------------- tables


def format_table(document: Mapping, metric: str = "ndcg@10") -> str:
    """A plain-text table: one row per method, one column per size, all and unseen queries."""
    results = document["results"]
    sizes = sizes_of(results)
    unseen = has_unseen(results, metric)
    width = max([len(m) for m in results] + [8])
    head = f"{metric} on {document['dataset']} {document['split']} ({document['encoder']})"
    lines = [head]
    for suffix, label in [("", "all queries"), ("_unseen", "unseen queries")][: 1 + unseen]:
        lines.append(f"{label:<{width}} " + " ".join(f"{s:>7}" for s in sizes))
        for method, by_size in results.items():
            cells = []
            for s in sizes:
                v = by_size.get(str(s), {}).get(metric + suffix)
                cells.append(f"{v:7.4f}" if v is not None else f"{'-':>7}")
            lines.append(f"{method:<{width}} " + " ".join(cells))
    if not unseen and document["split"] != "train":
        lines.append(f"({NO_UNSEEN})")
    if unseen and "unseen_rule" in document:
        lines.append(f"({document['unseen_rule']})")
    return "\n".join(lines)


def markdown_table(
    rows: Mapping[str, Mapping], sizes: Sequence[int], metric: str = "ndcg@10", std: bool = False
) -> str:
    """A markdown table: one row per method, one column per size; ``mean ± std`` cells with
    ``std``; "-" where a method has no value at a size."""
    lines = ["| method | " + " | ".join(map(str, sizes)) + " |", "|" + "---|" * (len(sizes) + 1)]
    for name, by_size in rows.items():
        cells = []
        for s in sizes:
            v = by_size.get(str(s), {})
            mean = v.get(metric)
            if std:
                cells.append("-" if mean is None else f"{mean:.4f} ± {v.get(metric + '_std'):.4f}")
            else:
                cells.append(f"{float('nan') if mean is None else mean:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reproduction_markdown(
    doc: Mapping, seeds: Sequence[int], ablations: Sequence[str], metric: str = "ndcg@10"
) -> str:
    """The reproduce report: all and unseen test queries, then the ablation rows."""
    results = doc["results"]
    sizes = sizes_of(results)

    def table(methods, suffix):
        return markdown_table({m: results[m] for m in methods}, sizes, metric + suffix, std=True)

    ablations = [m for m in ablations if m in results]
    parts = [
        f"# {doc['dataset']} ({doc['encoder']}), {doc['split']} split, {metric}",
        f"Mean ± std over seeds {list(seeds)} (closed-form baselines: one fit). Unseen queries: "
        "test queries none of whose relevant documents is judged relevant for a training query.",
        "## All test queries",
        table(list(results), ""),
        "## Unseen test queries",
    ]
    unseen = has_unseen(results, metric)
    parts.append(table(list(results), "_unseen") if unseen else NO_UNSEEN + ".")
    if doc.get("vs_pca"):
        parts += [
            "## Difference from PCA",
            f"Mean {metric} minus PCA's at each size, with the paired bootstrap 95% interval "
            "(queries and seeds resampled; per-query scores in `per_query.npz`); **bold**: "
            "the interval excludes zero. Cells: all queries"
            + (" / unseen queries." if unseen else "."),
            versus_table(doc["vs_pca"], sizes),
        ]
    if ablations:
        parts += ["## Ablations (all / unseen)", table(ablations, "")]
        parts += [table(ablations, "_unseen")] if unseen else []
    return "\n\n".join(parts) + "\n"


def interval(c: Mapping, bold: bool = True) -> str:
    """``+0.0123 [-0.0040, +0.0290]``; with ``bold``, bold where the interval excludes zero."""
    text = f"{c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]"
    return f"**{text}**" if bold and (c["lo"] > 0 or c["hi"] < 0) else text


def versus_table(vs: Mapping, sizes: Sequence[int]) -> str:
    """method rows, size columns, ``all / unseen`` interval cells (see :func:`interval`)."""
    lines = ["| method | " + " | ".join(map(str, sizes)) + " |", "|" + "---|" * (len(sizes) + 1)]
    for name, by_size in vs.items():
        cells = []
        for s in sizes:
            c = by_size.get(str(s))
            if c is None:
                cells.append("-")
            else:
                cells.append(" / ".join(interval(c[k]) for k in ("all", "unseen") if k in c))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plots


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Writes a matplotlib figure as PNG atomically; closes it."""
    plt = pyplot()
    with files.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_results(document: Mapping, path: str | Path, metric: str = "ndcg@10") -> Path:
    """PNG of ``metric`` against size, one line per method (all and unseen queries)."""
    plt = pyplot()
    results = document["results"]
    panels = [("", "all test queries")] + (
        [("_unseen", "unseen test queries")] if has_unseen(results, metric) else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 2.5, 4.6), squeeze=False)
    styles = ["-", "--", ":", "-."]  # beyond 10 methods the colours repeat: vary the line
    for ax, (suffix, title) in zip(axes[0], panels, strict=True):
        for i, (method, by_size) in enumerate(results.items()):
            sizes = sorted(int(s) for s in by_size)
            vals = [by_size[str(s)].get(metric + suffix, np.nan) for s in sizes]
            std = [by_size[str(s)].get(f"{metric}{suffix}_std", 0.0) for s in sizes]
            ax.errorbar(
                sizes,
                vals,
                yerr=std if any(std) else None,
                marker="o",
                markersize=4,
                capsize=2,
                linestyle=styles[(i // 10) % len(styles)],
                color=f"C{i % 10}",
                label=method,
            )
        ax.set_xscale("log", base=2)
        all_sizes = sorted({int(s) for r in results.values() for s in r})
        ax.set_xticks(all_sizes, [str(s) for s in all_sizes])
        ax.minorticks_off()
        ax.set_xlabel("embedding size")
        ax.set_ylabel(metric)
        ax.set_title(f"{document['dataset']} {document['split']}: {title}")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle(f"encoder: {document['encoder']} (error bars: std over seeds)")
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / fig.get_figwidth(), 1))
    return save_figure(fig, path)
