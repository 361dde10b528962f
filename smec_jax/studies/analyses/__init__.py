"""The reproduction report's analyses, one module each, written beside the report.

* ``grad``   (:mod:`.gradient_probe`): MRL vs SMRL gradient magnitude and variance.
* ``ads``    (:mod:`.ads_ware`): WARE importance, ADS achievement rate, each way of keeping
             original dims scored.
* ``memory`` (:mod:`.memory_sweep`): S-XBM memory size vs nDCG@10 and step time.
* ``cross``  (:mod:`.cross_corpus`): compressors trained on one corpus, scored on others.
* ``pooled`` (:mod:`.pooled`): compressors trained on every labelled corpus but the one
             scored (leave one corpus out), scored on it.
* ``query_log`` (:mod:`.query_log`): ``distill_pseudo_log``'s log share, chosen on halves
             of the training queries, on the log's topics and on new ones.

:func:`run` writes ``analysis.json`` and ``analysis.md`` into the workdir after each
analysis (keeping sections run earlier), so an interrupted run loses only the analysis in
progress. Training runs of the analyses go to ``workdir/analysis_runs``; test qrels are read
only to score finished models. Every analysis trains through :mod:`smec_jax.methods` and
:mod:`smec_jax.training.train`'s public functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from smec_jax import files, methods
from smec_jax.datasets import sources
from smec_jax.studies.analyses import (
    ads_ware,
    cross_corpus,
    gradient_probe,
    memory_sweep,
    pooled,
    query_log,
)

ANALYSES = {
    "grad": gradient_probe,
    "ads": ads_ware,
    "memory": memory_sweep,
    "cross": cross_corpus,
    "pooled": pooled,
    "query_log": query_log,
}


def markdown(doc: dict, config) -> str:
    parts = [f"# Analyses: {config.data.dataset} ({config.data.encoder})"]
    parts += [ANALYSES[name].markdown(doc[name], config) for name in ANALYSES if name in doc]
    return "\n\n".join(parts) + "\n"


def run(config, workdir: str | Path, analyses: Sequence[str], **options) -> dict:
    """Runs the named analyses on the config's dataset.

    ``options`` go to the analyses that take them: ``memory_sizes`` (memory), ``targets``,
    ``transfer_methods``, ``target_methods``, ``embed_cache``, ``load_target``, ``seeds``
    (cross); ``pool_sources``, ``pool_targets``, ``pooled_methods``, ``pool_target_methods``,
    ``embed_cache``, ``load_target``, ``seeds`` (pooled); ``log_shares``, ``seeds`` (query_log).
    """
    unknown = set(analyses) - set(ANALYSES)
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; use {', '.join(ANALYSES)}")
    methods.validate(config)
    files.check_workdir(workdir)
    ds = sources.load(config.data)
    ds.qrels_for(config.eval.split)
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    path = wd / "analysis.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    start = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[analyze {time.perf_counter() - start:.0f}s] {msg}", flush=True)

    takes = {
        "memory": ("memory_sizes",),
        "cross": (
            "targets",
            "transfer_methods",
            "target_methods",
            "embed_cache",
            "load_target",
            "seeds",
        ),
        "pooled": (
            "pool_sources",
            "pool_targets",
            "pooled_methods",
            "pool_target_methods",
            "embed_cache",
            "load_target",
            "seeds",
        ),
        "query_log": ("log_shares", "seeds"),
    }
    for name in analyses:
        kwargs = {k: options[k] for k in takes.get(name, ()) if k in options}
        doc[name] = ANALYSES[name].run(config, ds, wd, progress, **kwargs)
        files.write_json(path, doc)  # keep what is done
        files.atomic_write(wd / "analysis.md", markdown(doc, config))
    print(markdown(doc, config))
    print(f"wrote {wd}/analysis.md and analysis.json")
    return doc
