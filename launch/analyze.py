"""The reproduction report's analyses, written beside the report of ``launch.reproduce``.

  python -m launch.analyze [--config configs/default.py] --workdir docs/results/scifact-minilm \
      [--analyses grad,ads,memory,cross] [--memory_sizes 1000,2500,5000,10000,15000] \
      [--targets dbpedia-entity-5k,msmarco-dl19-5k]

* grad:   gradient probe, MRL vs SMRL (mean |gradient| of the smallest size's columns and of
          the others, gradient variance across batches), per epoch -> grad_variance.png.
* ads:    WARE importance of the original dims and the achievement rate of ADS vs prefix
          truncation (and the top-variance dims) -> ads_ware.png.
* memory: S-XBM memory-size sweep: SMEC test nDCG@10 (seed 0) and train-step time per
          memory size -> memory_sweep.png.
* cross:  SciFact-trained compressors (seed 0 of the reproduce runs in ``workdir/runs``,
          trained there if missing) applied unchanged to other corpora, next to label-free
          methods and PCA fitted on each target corpus alone. Target embeddings come from
          ``<data root>/<target>/embeddings/<encoder>``, else are made (resumably) under
          ``--embed_cache`` with the encoder of the config.

Writes ``analysis.md`` and ``analysis.json`` into ``--workdir`` (updating the sections it
ran; the others are kept); training runs of the analyses go to ``workdir/analysis_runs``.
Test qrels are read only to score finished models.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from absl import flags

from launch import benchmark, common, reproduce
from smec_jax import analysis, compressors, data, evaluation, train

FLAGS = flags.FLAGS
common.define_config_and_workdir("runs/reproduce")
flags.DEFINE_list("analyses", ["grad", "ads", "memory", "cross"], "Analyses to run.")
flags.DEFINE_list("memory_sizes", ["1000", "2500", "5000", "10000", "15000"], "S-XBM sizes.")
flags.DEFINE_list("targets", ["dbpedia-entity-5k", "msmarco-dl19-5k"], "Cross-corpus targets.")
flags.DEFINE_list(
    "transfer_methods",
    ["smec", "matryoshka_adaptor", "search_adaptor", "mrl"],
    "SciFact-trained methods applied to the targets.",
)
flags.DEFINE_string("embed_cache", "runs/embeddings", "Where missing target embeddings go.")


def shown_sizes(results: dict) -> list[int]:
    """The sizes the memory sweep shows: those of 128 and below (largest first)."""
    return sorted((int(d) for d in results if int(d) <= 128), reverse=True)


def _progress(msg: str, start: float) -> None:
    print(f"[analyze {time.perf_counter() - start:.0f}s] {msg}", flush=True)


# ---------------------------------------------------------------------------- the analyses


def run_grad(config, ds, workdir: Path, start: float) -> dict:
    probes = {}
    for method in ("mrl", "mrl_smrl"):
        _progress(f"gradient probe: {method}", start)
        probes[method] = analysis.gradient_probe(config, ds, method, verbose=True)
    analysis.plot_gradient_probe(probes, workdir / "grad_variance.png")
    return probes


def run_ads(config, ds, workdir: Path, start: float) -> dict:
    _progress("ADS alone on the original embedding (identity, frozen)", start)
    sizes = train.validate_config(config, ds, 1)
    runs = workdir / "analysis_runs"
    sets = {
        "ads": analysis.ads_selection(config, ds, runs / "ads"),
        "ads_no_early_stop": analysis.ads_selection(config, ds, runs / "ads_full", False),
    }
    train_q = ds.judged_queries(config.train.split)
    table = analysis.ads_table(ds, sets, sizes, train_q)
    table["sets"] = {k: {str(len(s)): [int(i) for i in s] for s in v[1:]} for k, v in sets.items()}
    comps = analysis.selection_compressors(
        sets, np.asarray(table["importance"]), np.asarray(table["variance"]), sizes
    )
    table["ndcg"] = evaluation.evaluate(ds, comps, sizes[1:], split=config.eval.split)
    _plot_ads(table, workdir / "ads_ware.png")
    return table


def run_memory(config, ds, workdir: Path, sizes: list[int], start: float) -> dict:
    out = {}
    for q in sizes:
        _progress(f"memory sweep: S-XBM size {q}", start)
        cfg = config.copy_and_resolve_references()
        cfg.memory.size = q
        res = reproduce.run_one(cfg, ds, "smec", 0, workdir / "analysis_runs" / "memory" / f"Q{q}")
        out[str(q)] = {"results": res, "step_ms": step_ms(cfg, ds.dim)}
    _plot_memory(out, workdir / "memory_sweep.png")
    return out


def step_ms(cfg, dim: int, repeats: int = 5) -> float:
    """Median milliseconds of the stage-1 train step at the config's batch and memory shape
    (memory full), timed as in ``launch.benchmark``: median of ``repeats`` x 10 steps."""
    step, state, batch = benchmark.reference_step(
        cfg,
        dim=dim,
        batch_queries=cfg.train.batch_queries,
        docs_per_query=cfg.train.n_pos + cfg.train.n_hard,
        mem_size=cfg.memory.size,
        k=cfg.memory.k,
    )
    return 1000 * benchmark.time_steps(step, state, batch, repeats)["median_s"] / 10


def target_data(config, name: str, embed_cache: str, start: float) -> data.RetrievalData:
    beir_dir = Path(config.data.root) / name
    encoder = config.data.encoder
    if not (beir_dir / "embeddings" / encoder).is_dir():
        cache = Path(embed_cache) / name / encoder
        if not (cache / "meta.json").is_file():
            from smec_jax import encode

            _progress(f"embedding {beir_dir} with {encoder} into {cache}", start)
            fn = encode.sentence_transformer_encoder(encode.resolve_model(encoder), 32, "cpu")
            encode.encode_beir(beir_dir, cache, fn, model_name=encoder)
        encoder = str(cache)
    return data.load_embedded(beir_dir, encoder)


def run_cross(config, ds, workdir: Path, targets, methods, embed_cache: str, start: float):
    trained = {}
    for m in methods:
        _progress(f"SciFact-trained {m} (seed 0; resumes the reproduce run)", start)
        cfg = config.copy_and_resolve_references()
        cfg.method, cfg.seed = m, 0
        trained[m], _ = train.fit(cfg, ds, workdir / "runs" / f"{m}-s0" / "train", verbose=False)
    out = {}
    for name in targets:
        target = target_data(config, name, embed_cache, start)
        comps = {
            "truncate": compressors.fit_method("truncate", target, config.ladder, config),
            "pca (fitted on target)": compressors.fit_method("pca", target, config.ladder, config),
        }
        comps |= {f"{m} (SciFact-trained)": c for m, c in trained.items()}
        for m in ("smec_unsup", "matryoshka_adaptor_unsup"):
            _progress(f"{name}: {m} fitted on the target corpus alone", start)
            cfg = config.copy_and_resolve_references()
            cfg.method, cfg.seed = m, 0
            run_dir = workdir / "analysis_runs" / "cross" / name / m
            comps[f"{m} (target corpus, no labels)"], _ = train.fit(
                cfg, target, run_dir, verbose=False
            )
        _progress(f"{name}: scoring {len(comps)} compressors", start)
        out[name] = evaluation.evaluate(target, comps, config.ladder, split="test")
    return out


# ---------------------------------------------------------------------------- plots, report


def _plot_ads(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    imp = np.asarray(table["importance"])
    axes[0].plot(np.sort(imp)[::-1])
    axes[0].set_title("WARE importance of the original dims (sorted)")
    axes[0].set_xlabel("rank")
    axes[0].set_ylabel("mean relative change of cos")
    rates = table["achievement_rate"]
    sizes = list(rates)
    x = np.arange(len(sizes))
    keys = list(rates[sizes[0]])
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        axes[1].bar(
            x + (i - (len(keys) - 1) / 2) * width, [rates[s][key] for s in sizes], width, label=key
        )
    axes[1].set_xticks(x, sizes)
    axes[1].set_xlabel("size")
    axes[1].set_title("achievement rate: share of selected dims in the WARE top-d")
    axes[1].legend()
    fig.tight_layout()
    evaluation.save_figure(fig, path)


def _plot_memory(sweep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    evaluation.save_figure(fig, path)


def _ndcg_table(rows: dict[str, dict], sizes, suffix: str = "") -> list[str]:
    lines = ["| method | " + " | ".join(map(str, sizes)) + " |", "|" + "---|" * (len(sizes) + 1)]
    for name, by_size in rows.items():
        cells = [f"{by_size[str(s)].get('ndcg@10' + suffix, float('nan')):.4f}" for s in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def markdown(doc: dict, config) -> str:
    parts = [f"# Analyses: {config.data.dataset} ({config.data.encoder})"]
    if "grad" in doc:
        parts.append("## Gradient probe: MRL vs SMRL (grad_variance.png)")
        parts.append(
            "Linear compressor, prefix sizes, no ADS/memory; both schedules train the same "
            "number of steps without early stopping; statistics on 4 fixed probe batches at "
            "the start of every epoch. Columns: mean over epochs (first / last epoch)."
        )
        lines = [
            "| schedule | mean abs grad, smallest size's columns | other columns | "
            "grad variance, all columns | grad variance, smallest size's columns |",
            "|---|---|---|---|---|",
        ]
        for method, p in doc["grad"].items():
            cells = [
                f"{np.mean(p[k]):.3g} ({p[k][0]:.3g} / {p[k][-1]:.3g})"
                for k in ("mag_small", "mag_other", "var_all", "var_small")
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    if "ads" in doc:
        t = doc["ads"]
        parts.append("## ADS vs WARE importance (ads_ware.png)")
        parts.append(
            "ADS trained alone on the original embedding (identity compressor, not trained; "
            "zero-initialised logits, which select the prefix; sequential stages), with early "
            "stopping on validation as in training (`ads`) and after the full step budget "
            "(`ads_no_early_stop`). WARE "
            f"importance on {t['pairs']} (training query, top-20 document) pairs. Achievement "
            "rate = share of the d selected dims inside the WARE top-d."
        )
        keys = list(next(iter(t["achievement_rate"].values())))
        lines = ["| size | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
        for d, r in t["achievement_rate"].items():
            lines.append(f"| {d} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
        parts.append("\n".join(lines))
        if "ndcg" in t:
            sizes = sorted({int(s) for r in t["ndcg"].values() for s in r}, reverse=True)
            parts.append(
                "Test nDCG@10 of the original dims each way keeps (no transform; "
                "`ware_top` is an oracle on the pairs above, not a method), all / unseen "
                "queries:\n\n"
                + "\n".join(_ndcg_table(t["ndcg"], sizes))
                + "\n\n"
                + "\n".join(_ndcg_table(t["ndcg"], sizes, "_unseen"))
            )
    if "memory" in doc:
        sweep = doc["memory"]
        shown = shown_sizes(next(iter(sweep.values()))["results"])
        parts.append("## S-XBM memory size (memory_sweep.png)")
        parts.append(
            "SMEC, seed 0, test nDCG@10 (all / unseen queries); step time = median of 5 x 10 "
            "steps of the stage-1 step at the config's batch shape."
        )
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
        parts.append("\n".join(lines))
    if "cross" in doc:
        parts.append("## Cross-corpus: SciFact-trained compressors on other corpora")
        parts.append(
            "Test nDCG@10 on each target (every query is unseen: nothing of the target was "
            "trained on). SciFact-trained = seed 0 of the reproduce runs, applied unchanged; "
            "label-free methods and PCA are fitted on the target corpus alone (no target "
            "labels)."
        )
        for name, rows in doc["cross"].items():
            sizes = sorted({int(s) for r in rows.values() for s in r}, reverse=True)
            parts.append(f"### {name}\n\n" + "\n".join(_ndcg_table(rows, sizes)))
    return "\n\n".join(parts) + "\n"


def run(
    config,
    workdir: str,
    analyses: list[str],
    *,
    memory_sizes=(1000, 2500, 5000, 10000, 15000),
    targets=("dbpedia-entity-5k", "msmarco-dl19-5k"),
    transfer_methods=("smec", "matryoshka_adaptor", "search_adaptor", "mrl"),
    embed_cache: str = "runs/embeddings",
) -> dict:
    unknown = set(analyses) - {"grad", "ads", "memory", "cross"}
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; use grad, ads, memory, cross")
    ds = data.load_from_config(config.data)
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    path = wd / "analysis.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    start = time.perf_counter()
    for name in analyses:
        if name == "grad":
            doc["grad"] = run_grad(config, ds, wd, start)
        elif name == "ads":
            doc["ads"] = run_ads(config, ds, wd, start)
        elif name == "memory":
            doc["memory"] = run_memory(config, ds, wd, list(memory_sizes), start)
        else:
            doc["cross"] = run_cross(config, ds, wd, targets, transfer_methods, embed_cache, start)
        evaluation.atomic_write(path, json.dumps(doc, indent=1) + "\n")  # keep what is done
        evaluation.atomic_write(wd / "analysis.md", markdown(doc, config))
    print(markdown(doc, config))
    print(f"wrote {wd}/analysis.md and analysis.json")
    return doc


if __name__ == "__main__":
    common.run_main(
        lambda: run(
            FLAGS.config,
            FLAGS.workdir,
            FLAGS.analyses,
            memory_sizes=[int(q) for q in FLAGS.memory_sizes],
            targets=FLAGS.targets,
            transfer_methods=FLAGS.transfer_methods,
            embed_cache=FLAGS.embed_cache,
        )
    )
