"""ADS vs WARE: does ADS keep the dims that matter, more often than the prefix does?

:func:`ware_importance` is the WARE importance of each dimension: the mean relative change
of query-document cosine similarities when that dimension alone is removed.
:func:`achievement_rate` is the share of a selected set of d dims that lies in the WARE
top-d. :func:`ads_selection` trains ADS alone on the original embedding (identity
compressor, frozen) so that its sets can be compared with prefix truncation, and
:func:`selection_compressors` scores each way of keeping original dims.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from smec_jax import methods
from smec_jax.core import retrieval
from smec_jax.core.compressor import Compressor
from smec_jax.core.retrieval import l2_normalize
from smec_jax.datasets.data import RetrievalData
from smec_jax.evaluation import reporting
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.training import checks, train


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
    overrides = {
        "model.kind": "linear",
        "model.init": "identity",
        "model.out_dim": 0,
        "train.lr": 0.0,
        "ads.enabled": True,
        "ads.init": "zeros",
        "memory.enabled": False,
    }
    if not early_stop:
        overrides |= {"train.patience": 10**6, "train.eval_every": cfg.train.steps_per_stage}
    cfg = methods.get("smec").resolve(methods.apply_overrides(cfg, overrides))
    return train.train(cfg, data, workdir, verbose=False).sets


@dataclasses.dataclass(frozen=True)
class DimSubset(Compressor):
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


def plot(table: dict, path) -> None:
    plt = reporting.pyplot()
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
    reporting.save_figure(fig, path)


def run(config, ds, workdir, progress) -> dict:
    progress("ADS alone on the original embedding (identity, frozen)")
    sizes = checks.validate_trainer_config(methods.get("smec").resolve(config), ds, 1)
    runs = workdir / "analysis_runs"
    sets = {
        "ads": ads_selection(config, ds, runs / "ads"),
        "ads_no_early_stop": ads_selection(config, ds, runs / "ads_full", False),
    }
    train_q = ds.judged_queries(config.train.split)
    table = ads_table(ds, sets, sizes, train_q)
    table["sets"] = {k: {str(len(s)): [int(i) for i in s] for s in v[1:]} for k, v in sets.items()}
    comps = selection_compressors(
        sets, np.asarray(table["importance"]), np.asarray(table["variance"]), sizes
    )
    table["ndcg"] = Evaluator.from_config(ds, config.eval).evaluate(comps, sizes[1:])
    plot(table, workdir / "ads_ware.png")
    return table


def markdown(t: dict, config) -> str:
    del config
    keys = list(next(iter(t["achievement_rate"].values())))
    lines = ["| size | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for d, r in t["achievement_rate"].items():
        lines.append(f"| {d} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    parts = [
        "## ADS vs WARE importance (ads_ware.png)",
        "ADS trained alone on the original embedding (identity compressor, not trained; "
        "zero-initialised logits, which select the prefix; sequential stages), with early "
        "stopping on validation as in training (`ads`) and after the full step budget "
        "(`ads_no_early_stop`). WARE "
        f"importance on {t['pairs']} (training query, top-20 document) pairs. Achievement "
        "rate = share of the d selected dims inside the WARE top-d.",
        "\n".join(lines),
    ]
    if "ndcg" in t:
        sizes = reporting.sizes_of(t["ndcg"])
        parts.append(
            "Test nDCG@10 of the original dims each way keeps (no transform; "
            "`ware_top` is an oracle on the pairs above, not a method), all / unseen "
            "queries:\n\n"
            + reporting.markdown_table(t["ndcg"], sizes)
            + "\n\n"
            + reporting.markdown_table(t["ndcg"], sizes, "ndcg@10_unseen")
        )
    return "\n\n".join(parts)
