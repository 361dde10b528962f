"""Pooled corpora: train on every labelled corpus but the one scored, then score it.

For each target corpus T, the pool (:func:`smec_jax.datasets.pooling.pool`) holds the judged
training pairs of every other source corpus and T's documents without any judgment: what
a user has who serves T and can borrow public labelled data embedded with the same
encoder. The ``pooled_methods`` (any trainer method) are fitted on that pool, the
``pool_target_methods`` (label-free) on T alone, PCA and truncation on T, and every compressor
is scored on T's test queries, all of which are unseen (nothing of T was judged in
training). Where T is the config's own dataset and has a labelled split in ``pool_sources``,
the pooled methods are also fitted on the pool plus T's own training judgments
("pool + target labels"), whose unseen test queries show whether the extra labelled
corpora help the queries T's labels cannot.

Per-query test nDCG@10 (seeds, sizes, queries) goes to ``workdir/pooled_per_query/<T>.npz``;
each compressor's difference from the target-fitted PCA gets a paired bootstrap 95%
interval over queries and seeds, per target and pooled over the targets' queries
(plotted in ``pooled_vs_pca.png``). Test qrels of T are read only to score finished
compressors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smec_jax import methods
from smec_jax.datasets import pooling, pseudo_queries
from smec_jax.evaluation import reporting
from smec_jax.studies import reproduction
from smec_jax.studies.analyses import cross_corpus

SOURCES = "scifact:train,nfcorpus:train,dbpedia-entity-5k:test,msmarco-dl19-5k:test"
BASE = cross_corpus.BASE


def _fit(config, method: str, seeds, train_data, target, workdir: Path, fits, what: str):
    """One compressor per seed of ``method`` fitted on ``train_data`` (each counted by
    ``fits``, a :class:`cross_corpus.FitCounter`); pseudo-queries (where the method distils
    on them) are the target's, made from its texts."""
    out = []
    for s in _runs(method, seeds):
        cfg = cross_corpus.seeded(config, method, s)
        method_cfg = methods.apply_overrides(cfg, methods.get(method).overrides)
        fit_data = train_data
        if method_cfg.train.distill_weight and "pseudo" in method_cfg.train.unlabelled_queries:
            pq = pseudo_queries.attach(target, cfg.data)
            fit_data = train_data.with_pseudo_queries(pq.pseudo_queries, pq.pseudo_source)
        out.append(
            fits.fit(
                f"{target.name}: {method} seed {s} {what}",
                cfg,
                fit_data,
                workdir / f"{method}-s{s}",
            )
        )
    return out


def _runs(method: str, seeds):
    return seeds if methods.get(method).seeded else seeds[:1]


def run(
    config,
    ds,
    workdir: Path,
    progress,
    pool_sources: str = SOURCES,
    pool_targets=None,
    pooled_methods=("smec",),
    pool_target_methods=("smec_unsup",),
    embed_cache: str = "runs/embeddings",
    load_target=cross_corpus.target_data,
    seeds=(0,),
) -> dict:
    """Per target of ``pool_targets`` (default: every source with a test split): mean test
    metrics over ``seeds``, per-query scores in ``pooled_per_query/<target>.npz`` and
    paired intervals against target PCA; the plot ``pooled_vs_pca.png``."""
    parts = pooling.parse_sources(pool_sources)
    corpora = {
        name: ds if name == ds.name else load_target(config, name, embed_cache, progress)
        for name, _ in parts
    }
    targets = list(pool_targets or [n for n, d in corpora.items() if "test" in d.qrels])
    unknown = [t for t in targets if t not in corpora]
    if unknown:
        raise ValueError(f"targets {unknown} are not in the pooled sources {pool_sources!r}")
    own_labels = ds.name in targets and dict(parts).get(ds.name) is not None
    per_target = sum(len(_runs(m, seeds)) for m in (*pool_target_methods, *pooled_methods))
    fits = cross_corpus.FitCounter(
        len(targets) * per_target + own_labels * sum(len(_runs(m, seeds)) for m in pooled_methods),
        progress,
    )
    out, pooled = {"sources": pool_sources}, {}
    for name in targets:
        target = corpora[name]
        others = [(corpora[n], s) for n, s in parts if n != name]
        runs = workdir / "analysis_runs" / "pooled" / name
        comps = {
            cross_corpus.CEILING: [cross_corpus.FullSize(target.dim)],
            "truncate": [methods.get("truncate").fit(config, target).compressor],
            BASE: [methods.get("pca").fit(config, target).compressor],
        }
        for m in pool_target_methods:
            comps[f"{m} (target, no labels)"] = _fit(
                config, m, seeds, target, target, runs, fits, "on the target alone"
            )
        pool = pooling.pool([(target, None)] + others)
        for m in pooled_methods:
            comps[f"{m} (pool, no target labels)"] = _fit(
                config, m, seeds, pool, target, runs / "pool", fits, f"on {pool.name}"
            )
        own = dict(parts).get(name)
        if target is ds and own is not None:
            with_own = pooling.pool([(target, own)] + others)
            for m in pooled_methods:
                comps[f"{m} (pool + target labels)"] = _fit(
                    config,
                    m,
                    seeds,
                    with_own,
                    target,
                    runs / "pool_own",
                    fits,
                    f"on {with_own.name}",
                )
        progress(f"{name}: scoring {sum(map(len, comps.values()))} compressors")
        evaluator, rows, per_query = cross_corpus.score(config, target, comps)
        reproduction.save_per_query(
            workdir / "pooled_per_query" / f"{name}.npz",
            evaluator.qids,
            config.ladder,
            {"names": np.asarray(list(per_query)), "unseen": evaluator.unseen_mask}
            | {f"p{i}": v for i, v in enumerate(per_query.values())},
        )
        vs = reproduction.versus(per_query, evaluator.unseen_mask, config.ladder, base=BASE)
        out[name] = {"results": rows, "vs_pca": vs, "pool": pool.name}
        for k, v in per_query.items():
            pooled.setdefault(k, []).append(v)
    shared = [k for k, v in pooled.items() if len(v) == len(targets)]
    if len(targets) > 1:
        out["pooled_vs_pca"] = cross_corpus.versus_pca(
            {k: np.concatenate(pooled[k], axis=2) for k in shared}, config.ladder
        )
    out["seeds"] = list(seeds)
    plot(out, workdir / "pooled_vs_pca.png")
    return out


def plot(section: dict, path: Path) -> None:
    """One panel per target (and one over every target's queries): each compressor's
    difference from target-fitted PCA against the size, with its 95% interval (all
    queries)."""
    panels = {k: v["vs_pca"] for k, v in section.items() if isinstance(v, dict) and "pool" in v}
    if "pooled_vs_pca" in section:
        panels["every target's queries"] = section["pooled_vs_pca"]
    names = list(dict.fromkeys(n for vs in panels.values() for n in vs if n != "truncate"))
    plt = reporting.pyplot()
    colors = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, vs) in zip(axes[0], panels.items(), strict=True):
        for name in names:
            if name not in vs:
                continue
            sizes = sorted(int(s) for s in vs[name])
            cells = [vs[name][str(d)]["all"] for d in sizes]
            mid = np.array([c["diff"] for c in cells])
            err = np.array(
                [[c["diff"] - c["lo"] for c in cells], [c["hi"] - c["diff"] for c in cells]]
            )
            ax.errorbar(
                sizes,
                mid,
                yerr=err,
                marker="o",
                capsize=3,
                color=colors[name],
                ls="--" if name == cross_corpus.CEILING else "-",
                label=name,
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(d) for d in sizes])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("dims")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("nDCG@10 minus target-fitted PCA (95% interval)")
    handles = [
        plt.Line2D(
            [],
            [],
            color=colors[n],
            marker="o",
            ls="--" if n == cross_corpus.CEILING else "-",
            label=n,
        )
        for n in names
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 3), fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    reporting.save_figure(fig, path)


def markdown(section: dict, config) -> str:
    del config
    section = dict(section)
    seeds = section.pop("seeds", [0])
    sources = section.pop("sources", SOURCES)
    across = section.pop("pooled_vs_pca", None)
    parts = [
        "## Pooled corpora: trained on every labelled corpus but the one scored "
        "(pooled_vs_pca.png)",
        f"Sources `{sources}`. For each target, the pool holds the judged training pairs of "
        "every other source and the target's documents without judgments; `pool + target "
        "labels` adds the target's own training judgments. Test nDCG@10 on the target, mean "
        f"over seeds {seeds}, all queries (and unseen where the target has training "
        "judgments), then each compressor's difference from the target-fitted PCA with a "
        "paired bootstrap 95% interval over queries and seeds (**bold**: excludes zero); "
        "per-query scores (seeds, sizes, queries) in `pooled_per_query/`. "
        f"`{cross_corpus.CEILING}` is the uncompressed embeddings in every column: the "
        "headroom over PCA (dashed in the plot).",
    ]
    for name, sec in section.items():
        rows = sec["results"]
        sizes = reporting.sizes_of(rows)
        text = f"### {name}\n\nPool: `{sec['pool']}`\n\nAll test queries:\n\n"
        text += reporting.markdown_table(rows, sizes)
        if any("ndcg@10_unseen" in r[str(s)] for r in rows.values() for s in sizes):
            text += "\n\nUnseen test queries:\n\n"
            text += reporting.markdown_table(rows, sizes, metric="ndcg@10_unseen")
        text += "\n\nDifference from target-fitted PCA (all / unseen):\n\n"
        text += reporting.versus_table(sec["vs_pca"], sizes)
        parts.append(text)
    if across:
        sizes = reporting.sizes_of(across)
        parts.append(
            "### Over every target's queries: difference from target-fitted PCA\n\n"
            + reporting.versus_table(across, sizes)
        )
    return "\n\n".join(parts)
