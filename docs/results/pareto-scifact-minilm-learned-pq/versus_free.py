"""The learned product quantizer against the free codes at 16 and 32 B, codes only, paired
bootstrap 95% intervals over queries x seeds (the free codes are seed-free: their one run is
paired with each seed's learned run).

The free codes are every truncation and PCA point within the budget (no funnel) of this
report and of ``docs/results/pareto-scifact-minilm-pq`` (the same test queries; it adds the
256-d sizes and OPQ with 10 iterations, marked ``[pq run]``). Two of them are compared:
the one with the best validation score (a fair choice) and the one with the best unseen
test score (a choice made on the test queries, which favours the free side). Then SciFact
and NFCorpus (``docs/results/pareto-nfcorpus-minilm-learned-pq``) pooled. Run from the
repository root:

  python docs/results/pareto-scifact-minilm-learned-pq/versus_free.py \
      > docs/results/pareto-scifact-minilm-learned-pq/versus_free.md
"""

import json
from pathlib import Path

import numpy as np

from smec_jax.evaluation import stats

HERE = Path(__file__).resolve().parent
OTHER = HERE.parent / "pareto-scifact-minilm-pq"


def load(folder: Path, tag: str = ""):
    z = np.load(folder / "per_query.npz")
    doc = json.loads((folder / "pareto.json").read_text())
    per = {str(n) + tag: z[f"p{i}"] for i, n in enumerate(z["names"])}
    pts = {p["name"] + tag: p for p in doc["points"]}
    return z["qids"], z["unseen"], per, pts


def ci(a, b) -> str:
    r = stats.paired_bootstrap(a.ravel(), b.ravel())
    return f"{r['diff']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]"


def main() -> None:
    qids, unseen, per, pts = load(HERE)
    qids2, _, per2, pts2 = load(OTHER, " [pq run]")
    assert list(qids) == list(qids2), "the two reports scored other queries"
    per |= per2
    pts |= pts2
    full = per["truncate: 384-d float32"][:, unseen].mean()
    print("# The learned product quantizer against the free codes (SciFact, MiniLM)\n")
    print(f"Made by `{Path(__file__).relative_to(HERE.parents[2])}`. Codes only; all / unseen")
    print(f"test queries; full size {full:.4f} on the {int(unseen.sum())} unseen queries.\n")
    print("| budget | learned (3 seeds) | free code | free: all / unseen | learned - free, all | learned - free, unseen |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for m in (16, 32):
        mine = per[f"distill_pq: learned PQ{m}"]
        free = [
            n
            for n, p in pts.items()
            if p["method"] in ("truncate", "pca") and p["bytes"] <= m and "funnel" not in n
        ]
        by_val = max(free, key=lambda n: np.nanmean(pts[n]["val"]))
        by_test = max(free, key=lambda n: per[n][:, unseen].mean())
        for how, n in (("best on validation", by_val), ("best on unseen test", by_test)):
            theirs = np.repeat(per[n][:1], len(mine), 0)
            print(
                f"| {m} B | {mine.mean():.4f} / {mine[:, unseen].mean():.4f} "
                f"({mine[:, unseen].mean() / full:.1%} of full) | {how}: {n} | "
                f"{theirs.mean():.4f} / {theirs[:, unseen].mean():.4f} | {ci(mine, theirs)} | "
                f"{ci(mine[:, unseen], theirs[:, unseen])} |"
            )
    seeds = per["distill_pq: learned PQ32"][:, unseen].mean(axis=1)
    print(f"\nLearned PQ32 on unseen queries per seed: {', '.join(f'{s:.4f}' for s in seeds)}.")
    pooled(per, pts)


def pooled(sci_per, sci_pts) -> None:
    """SciFact and NFCorpus (its own report beside this one) pooled: every test query of
    both, the learned code against each corpus's free code chosen on validation."""
    nf = HERE.parent / "pareto-nfcorpus-minilm-learned-pq"
    if not (nf / "per_query.npz").is_file():
        return
    _, _, nf_per, nf_pts = load(nf)
    print("\n## Pooled: SciFact and NFCorpus test queries (all), free code chosen on validation\n")
    print("| budget | corpus | learned | free code | free | learned - free |")
    print("|---|---|---|---|---|---|")
    for m in (16, 32):
        mine_all, theirs_all = [], []
        for corpus, per, pts in (("SciFact", sci_per, sci_pts), ("NFCorpus", nf_per, nf_pts)):
            mine = per[f"distill_pq: learned PQ{m}"]
            free = [
                n
                for n, p in pts.items()
                if p["method"] in ("truncate", "pca") and p["bytes"] <= m and "funnel" not in n
            ]
            by_val = max(free, key=lambda n: np.nanmean(pts[n]["val"]))
            theirs = np.repeat(per[by_val][:1], len(mine), 0)
            mine_all.append(mine.ravel())
            theirs_all.append(theirs.ravel())
            print(
                f"| {m} B | {corpus} | {mine.mean():.4f} | {by_val} | {theirs.mean():.4f} | "
                f"{ci(mine, theirs)} |"
            )
        a, b = np.concatenate(mine_all), np.concatenate(theirs_all)
        print(
            f"| {m} B | pooled | {a.mean():.4f} | (each corpus's) | {b.mean():.4f} | {ci(a, b)} |"
        )


if __name__ == "__main__":
    main()
