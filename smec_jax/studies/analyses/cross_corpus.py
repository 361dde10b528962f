"""Cross-corpus: compressors trained on one corpus applied unchanged to others.

SciFact-trained compressors (the reproduce runs of each seed in ``workdir/runs``, trained
there if missing) are scored on each target corpus next to truncation, PCA fitted on the
target and label-free methods fitted on the target corpus alone (its documents, its
training queries without their judgments where it has a training split, or the
pseudo-queries made from its texts, as the method asks). Target embeddings come from
``<data root>/<target>/embeddings/<encoder>``, else are made (resumably) under
``embed_cache`` with the encoder of the config. Every target query is unseen.

Each target's per-query test nDCG@10 (seeds, sizes, queries) goes to
``workdir/cross_per_query/<target>.npz``, and every compressor's difference from the
target-fitted PCA gets a paired bootstrap 95% interval over queries and seeds, per target
and pooled over the queries of every target. The uncompressed embeddings are scored beside
them at every size (:class:`FullSize`): their lead over PCA is the most any compressor can
be expected to show, so where its interval includes zero, the target's queries cannot
resolve a compressor's gain over PCA at that size.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from smec_jax import methods
from smec_jax.core.compressor import Compressor
from smec_jax.datasets import data
from smec_jax.evaluation import reporting
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.progress import eta
from smec_jax.studies import reproduction

LABEL_FREE = tuple(methods.names(group="label_free"))
BASE = "pca (fitted on target)"
CEILING = "full size (no compression)"
AGREE_K = 10
AGREE = f"agree@{AGREE_K}"  # share of the uncompressed top 10 a compressor keeps


class FullSize(Compressor):
    """The original embeddings (unit rows) at every size: the ceiling of the comparison."""

    def __init__(self, dim: int):
        self.dim = dim

    def compress(self, x, dim: int):
        del dim
        return x / jnp.linalg.norm(x, axis=-1, keepdims=True)

    def bytes_per_vector(self, dim: int) -> int:
        del dim
        return 4 * self.dim


def target_data(config, name: str, embed_cache: str, progress) -> data.RetrievalData:
    """The corpus ``name`` (a folder of the data root, else a folder path) embedded with the
    config's encoder (embedding it if needed)."""
    beir_dir = Path(config.data.root) / name
    if not beir_dir.is_dir() and Path(name).is_dir():
        beir_dir = Path(name)
    encoder = config.data.encoder
    if not (beir_dir / "embeddings" / encoder).is_dir():
        cache = Path(embed_cache) / beir_dir.name / encoder
        if not (cache / "meta.json").is_file():
            from smec_jax.datasets import encode

            progress(f"embedding {beir_dir} with {encoder} into {cache}")
            fn = encode.sentence_transformer_encoder(encode.resolve_model(encoder), 32, "cpu")
            encode.encode_beir(beir_dir, cache, fn, model_name=encoder)
        encoder = str(cache)
    return data.load_embedded(beir_dir, encoder)


def seeded(config, method: str, seed: int):
    """A copy of ``config`` with ``method`` and ``seed`` set."""
    cfg = config.copy_and_resolve_references()
    cfg.method, cfg.seed = method, seed
    return cfg


def run(
    config,
    ds,
    workdir: Path,
    progress,
    targets=("nfcorpus", "dbpedia-entity-5k", "msmarco-dl19-5k"),
    transfer_methods=("smec", "smec_distill", "matryoshka_adaptor", "search_adaptor", "mrl"),
    target_methods=LABEL_FREE,
    embed_cache: str = "runs/embeddings",
    load_target=target_data,
    seeds=(0,),
) -> dict:
    """Per target: mean test metrics over ``seeds`` of every compressor, its per-query scores
    (seeds, sizes, queries) in ``cross_per_query/<target>.npz``, and paired bootstrap
    intervals (over queries and seeds) of each one's difference from the target-fitted PCA,
    per target and pooled over every target's queries."""

    def runs_of(m):
        return seeds if methods.get(m).seeded else seeds[:1]

    total = sum(len(runs_of(m)) for m in transfer_methods) + len(targets) * sum(
        len(runs_of(m)) for m in target_methods
    )
    fits = FitCounter(total, progress)
    trained = {}  # name -> one compressor per seed
    for m in transfer_methods:
        trained[f"{m} (SciFact-trained)"] = [
            fits.fit(
                f"SciFact-trained {m} seed {s} (resumes the reproduce run)",
                seeded(config, m, s),
                ds,
                workdir / "runs" / f"{m}-s{s}" / "train",
            )
            for s in runs_of(m)
        ]
    out, pooled = {}, {}
    for name in targets:
        target = load_target(config, name, embed_cache, progress)
        comps = {
            CEILING: [FullSize(target.dim)],
            "truncate": [methods.get("truncate").fit(config, target).compressor],
            BASE: [methods.get("pca").fit(config, target).compressor],
        } | trained
        for m in target_methods:
            comps[f"{m} (target, no labels)"] = [
                fits.fit(
                    f"{name}: {m} seed {s}, fitted on the target corpus alone",
                    seeded(config, m, s),
                    target,
                    workdir / "analysis_runs" / "cross" / name / f"{m}-s{s}",
                )
                for s in runs_of(m)
            ]
        progress(f"{name}: scoring {sum(map(len, comps.values()))} compressors")
        evaluator, rows, per_query = score(config, target, comps)
        out[name] = rows
        reproduction.save_per_query(
            workdir / "cross_per_query" / f"{name}.npz",
            evaluator.qids,
            config.ladder,
            {"names": np.asarray(list(per_query))}
            | {f"p{i}": v for i, v in enumerate(per_query.values())},
        )
        out[name]["vs_pca"] = versus_pca(per_query, config.ladder)
        for k, v in per_query.items():
            pooled.setdefault(k, []).append(v)
    shared = [k for k, v in pooled.items() if len(v) == len(targets)]
    if len(targets) > 1:
        out["pooled_vs_pca"] = versus_pca(
            {k: np.concatenate(pooled[k], axis=2) for k in shared}, config.ladder
        )
    out["seeds"] = list(seeds)
    return out


class FitCounter:
    """Runs the analysis's fits one by one, announcing each with its number and the ETA of
    the rest at the rate so far (resumed runs are quick, so the ETA falls as it goes)."""

    def __init__(self, total: int, progress):
        self.total, self.done, self.progress = total, 0, progress
        self.start = time.perf_counter()

    def fit(self, what: str, cfg, data, run_dir: Path):
        """The compressor of ``cfg.method`` fitted on ``data`` in ``run_dir``."""
        elapsed = time.perf_counter() - self.start
        self.progress(
            f"[fit {self.done + 1}/{self.total}] {what} | ETA {eta(elapsed, self.done, self.total)}"
        )
        compressor = methods.get(cfg.method).fit(cfg, data, run_dir, verbose=False).compressor
        self.done += 1
        return compressor


def score(config, target, comps: dict) -> tuple[Evaluator, dict, dict]:
    """(evaluator, rows, per_query) of ``comps`` (label -> one compressor per seed) on the
    target's test split: rows = label -> mean metrics over seeds, with ``agree@10`` (the
    share of the uncompressed top 10 kept, :meth:`Evaluator.agreement`); per_query = label
    -> (seeds, sizes, queries) nDCG@10 in ``evaluator.qids`` order."""
    evaluator = Evaluator.from_config(target, config.eval, split="test")
    _, full_top = evaluator.search(FullSize(target.dim), target.dim, AGREE_K)
    rows, per_query = {}, {}
    for label, fits in comps.items():
        per_seed, scores = [], []
        for comp in fits:
            pq: dict = {}
            res = evaluator.evaluate({label: comp}, config.ladder, pq)[label]
            for d in config.ladder:
                res[str(d)][AGREE] = float(evaluator.agreement(comp, d, full_top).mean())
            per_seed.append(res)
            scores.append(pq[label])
        rows[label] = reporting.aggregate(per_seed)
        per_query[label] = np.stack(scores)
    return evaluator, rows, per_query


def versus_pca(per_query: dict, sizes) -> dict:
    """name -> size -> {"all": interval} of the difference from the target-fitted PCA;
    per_query: name -> (seeds, sizes, queries)."""
    return reproduction.versus(per_query, np.zeros(0, bool), sizes, base=BASE)


def markdown(section: dict, config) -> str:
    del config
    section = dict(section)
    seeds = section.pop("seeds", [0])
    parts = [
        "## Cross-corpus: SciFact-trained compressors on other corpora",
        f"Test nDCG@10 on each target, mean over seeds {seeds} (every "
        "query is unseen: nothing of the target was trained on). SciFact-trained = the "
        "reproduce runs, applied unchanged; "
        "label-free methods and PCA are fitted on the target alone (its documents, its "
        "training queries without judgments where it has them, or pseudo-queries made from "
        "its texts). Then each compressor's difference from the target-fitted PCA with a "
        "paired bootstrap 95% interval over queries and seeds (**bold**: excludes zero); "
        "per-query scores (seeds, sizes, queries) in `cross_per_query/`. "
        f"The `{CEILING}` row scores the uncompressed embeddings in every column: its lead "
        "over PCA is the headroom, and where its interval includes zero these queries "
        "cannot show any compressor ahead of PCA at that size.",
    ]
    for name, rows in section.items():
        if name == "pooled_vs_pca":
            continue
        rows = {k: v for k, v in rows.items() if k != "vs_pca"}
        sizes = reporting.sizes_of(rows)
        parts.append(f"### {name}\n\n" + reporting.markdown_table(rows, sizes))
        if "vs_pca" in section[name]:
            parts.append(reporting.versus_table(section[name]["vs_pca"], sizes))
        if any(AGREE in r.get(str(d), {}) for r in rows.values() for d in sizes):
            parts.append(
                f"Top-{AGREE_K} agreement with the uncompressed ranking (no judgment read: the "
                f"share of the full-size top {AGREE_K} each compressor keeps, mean over the "
                "test queries and seeds):\n\n" + reporting.markdown_table(rows, sizes, metric=AGREE)
            )
    if "pooled_vs_pca" in section:
        vs = section["pooled_vs_pca"]
        sizes = reporting.sizes_of(vs)
        parts.append(
            "### Pooled over every target's queries: difference from target-fitted PCA\n\n"
            + reporting.versus_table(vs, sizes)
        )
    return "\n\n".join(parts)
