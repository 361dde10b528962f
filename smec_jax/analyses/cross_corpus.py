"""Cross-corpus: compressors trained on one corpus applied unchanged to others.

SciFact-trained compressors (seed 0 of the reproduce runs in ``workdir/runs``, trained there
if missing) are scored on each target corpus next to truncation, PCA fitted on the target
and label-free methods fitted on the target corpus alone. Target embeddings come from
``<data root>/<target>/embeddings/<encoder>``, else are made (resumably) under
``embed_cache`` with the encoder of the config. Every target query is unseen.
"""

from __future__ import annotations

from pathlib import Path

from smec_jax import data, methods, reporting
from smec_jax.evaluation import Evaluator

LABEL_FREE = ("smec_unsup", "matryoshka_adaptor_unsup")


def target_data(config, name: str, embed_cache: str, progress) -> data.RetrievalData:
    """The target corpus embedded with the config's encoder (embedding it if needed)."""
    beir_dir = Path(config.data.root) / name
    encoder = config.data.encoder
    if not (beir_dir / "embeddings" / encoder).is_dir():
        cache = Path(embed_cache) / name / encoder
        if not (cache / "meta.json").is_file():
            from smec_jax import encode

            progress(f"embedding {beir_dir} with {encoder} into {cache}")
            fn = encode.sentence_transformer_encoder(encode.resolve_model(encoder), 32, "cpu")
            encode.encode_beir(beir_dir, cache, fn, model_name=encoder)
        encoder = str(cache)
    return data.load_embedded(beir_dir, encoder)


def _seed0(config, method: str):
    cfg = config.copy_and_resolve_references()
    cfg.method, cfg.seed = method, 0
    return cfg


def run(
    config,
    ds,
    workdir: Path,
    progress,
    targets=("dbpedia-entity-5k", "msmarco-dl19-5k"),
    transfer_methods=("smec", "matryoshka_adaptor", "search_adaptor", "mrl"),
    embed_cache: str = "runs/embeddings",
    load_target=target_data,
) -> dict:
    trained = {}
    for m in transfer_methods:
        progress(f"SciFact-trained {m} (seed 0; resumes the reproduce run)")
        run_dir = workdir / "runs" / f"{m}-s0" / "train"
        trained[m] = methods.get(m).fit(_seed0(config, m), ds, run_dir, verbose=False).compressor
    out = {}
    for name in targets:
        target = load_target(config, name, embed_cache, progress)
        comps = {
            "truncate": methods.get("truncate").fit(config, target).compressor,
            "pca (fitted on target)": methods.get("pca").fit(config, target).compressor,
        }
        comps |= {f"{m} (SciFact-trained)": c for m, c in trained.items()}
        for m in LABEL_FREE:
            progress(f"{name}: {m} fitted on the target corpus alone")
            run_dir = workdir / "analysis_runs" / "cross" / name / m
            fitted = methods.get(m).fit(_seed0(config, m), target, run_dir, verbose=False)
            comps[f"{m} (target corpus, no labels)"] = fitted.compressor
        progress(f"{name}: scoring {len(comps)} compressors")
        out[name] = Evaluator.from_config(target, config.eval, split="test").evaluate(
            comps, config.ladder
        )
    return out


def markdown(section: dict, config) -> str:
    del config
    parts = [
        "## Cross-corpus: SciFact-trained compressors on other corpora",
        "Test nDCG@10 on each target (every query is unseen: nothing of the target was "
        "trained on). SciFact-trained = seed 0 of the reproduce runs, applied unchanged; "
        "label-free methods and PCA are fitted on the target corpus alone (no target "
        "labels).",
    ]
    for name, rows in section.items():
        sizes = reporting.sizes_of(rows)
        parts.append(f"### {name}\n\n" + reporting.markdown_table(rows, sizes))
    return "\n\n".join(parts)
