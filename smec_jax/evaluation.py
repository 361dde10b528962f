"""Scoring compressors at every ladder size, and the one results format every command writes.

``results.json``::

  {"dataset": ..., "encoder": ..., "split": ...,
   "results": {method: {size: {"ndcg@10", "recall@100", "mrr@10",
                               "ndcg@10_unseen", "recall@100_unseen", "mrr@10_unseen"}}}}

Sizes are strings. The ``_unseen`` metrics are over the test queries none of whose relevant
docs is judged relevant for any training query (DESIGN.md section 3).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from smec_jax import metrics, retrieval
from smec_jax.compressors import Compressor
from smec_jax.data import RetrievalData

METRICS = ("ndcg@10", "recall@100", "mrr@10")
TOP_K = 100


def score(
    data: RetrievalData,
    comp: Compressor,
    dim: int,
    qids: list[str],
    qrels,
    *,
    exclude: np.ndarray | None = None,
    mesh: Mesh | None = None,
    corpus: jax.Array | None = None,
) -> dict[str, np.ndarray]:
    """Per-query metrics of one compressor at one size (exact search over the whole corpus)."""
    q_emb = jnp.asarray(data.queries[data.query_rows(qids)])
    c_emb = jnp.asarray(data.corpus) if corpus is None else corpus
    bias = comp.doc_bias() if hasattr(comp, "doc_bias") else None  # the doc_prior control
    _, ranked = retrieval.search(
        comp.compress(q_emb, dim),
        comp.compress(c_emb, dim),
        TOP_K,
        exclude=exclude,
        doc_bias=bias,
        mesh=mesh,
    )
    return metrics.score_run(ranked, qids, data.corpus_ids, qrels)


def evaluate(
    data: RetrievalData,
    compressors: Mapping[str, Compressor],
    sizes: Sequence[int],
    *,
    split: str = "test",
    mesh: Mesh | None = None,
    exclude_self: bool = False,
) -> dict[str, dict[str, dict[str, float]]]:
    """Scores each compressor at each size on ``split``; returns method -> size -> metrics."""
    qids = data.judged_queries(split)
    if not qids:
        raise ValueError(f"split {split!r} of {data.name} has no query with a relevant judgment")
    qrels = data.qrels_for(split)
    unseen = (
        set(data.unseen_queries(split)) if split != "train" and "train" in data.qrels else set()
    )
    unseen_mask = np.asarray([q in unseen for q in qids])
    exclude = retrieval.self_exclusion(qids, data.corpus_ids) if exclude_self else None
    corpus = jnp.asarray(data.corpus)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, comp in compressors.items():
        out[name] = {}
        for dim in sizes:
            per_query = score(
                data, comp, dim, qids, qrels, exclude=exclude, mesh=mesh, corpus=corpus
            )
            row = {m: float(v.mean()) for m, v in per_query.items()}
            if unseen_mask.any():
                row |= {f"{m}_unseen": float(v[unseen_mask].mean()) for m, v in per_query.items()}
            out[name][str(dim)] = row
    return out


def results_document(data: RetrievalData, split: str, results: Mapping) -> dict:
    return {"dataset": data.name, "encoder": data.encoder, "split": split, "results": results}


def atomic_write(path: str | Path, payload: bytes | str) -> None:
    """Writes a file via a temp file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_results(workdir: str | Path, document: Mapping) -> Path:
    path = Path(workdir) / "results.json"
    atomic_write(path, json.dumps(document, indent=1, sort_keys=False) + "\n")
    return path


def report(document: Mapping, workdir: str | Path) -> None:
    """Prints the table and writes ``results.json`` and ``ndcg_vs_dim.png`` into ``workdir``."""
    print(format_table(document))
    write_results(workdir, document)
    plot_results(document, Path(workdir) / "ndcg_vs_dim.png")
    print(f"wrote {workdir}/results.json and ndcg_vs_dim.png")


def format_table(document: Mapping, metric: str = "ndcg@10") -> str:
    """A plain-text table: one row per method, one column per size, all and unseen queries."""
    results = document["results"]
    sizes = sorted({int(s) for r in results.values() for s in r}, reverse=True)
    has_unseen = any(f"{metric}_unseen" in v for r in results.values() for v in r.values())
    width = max([len(m) for m in results] + [8])
    head = f"{metric} on {document['dataset']} {document['split']} ({document['encoder']})"
    lines = [head]
    for suffix, label in [("", "all queries"), ("_unseen", "unseen queries")][: 1 + has_unseen]:
        lines.append(f"{label:<{width}} " + " ".join(f"{s:>7}" for s in sizes))
        for method, by_size in results.items():
            cells = []
            for s in sizes:
                v = by_size.get(str(s), {}).get(metric + suffix)
                cells.append(f"{v:7.4f}" if v is not None else f"{'-':>7}")
            lines.append(f"{method:<{width}} " + " ".join(cells))
    return "\n".join(lines)


def plot_results(document: Mapping, path: str | Path, metric: str = "ndcg@10") -> Path:
    """PNG of ``metric`` against size, one line per method (all and unseen queries)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = document["results"]
    has_unseen = any(f"{metric}_unseen" in v for r in results.values() for v in r.values())
    panels = [("", "all test queries")] + (
        [("_unseen", "unseen test queries")] if has_unseen else []
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


def save_figure(fig, path: str | Path) -> Path:
    """Writes a matplotlib figure as PNG via a temp file and a rename; closes it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
