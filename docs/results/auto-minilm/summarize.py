"""Tables of docs/results/auto-minilm: per dataset and situation, what auto chose per seed,
every candidate's validation score (mean over the compressed sizes) and its test nDCG@10 at
64 and 32 dims on all and on unseen queries, seed means. Run from the repository root:

  python docs/results/auto-minilm/summarize.py > docs/results/auto-minilm/summary.md
"""

import json
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = ("64", "32")


def main() -> None:
    print("# method=auto on SciFact and NFCorpus (all-MiniLM-L6-v2)\n")
    print(f"Made by `{HERE.relative_to(HERE.parents[2]) / 'commands.sh'}`; one folder per run.\n")
    for ds in ("scifact", "nfcorpus"):
        for kind in ("judged", "unjudged"):
            runs = sorted(HERE.glob(f"{ds}-{kind}-*"))
            if not runs:
                continue
            autos = [json.loads((r / "auto.json").read_text()) for r in runs]
            results = [json.loads((r / "results.json").read_text())["results"] for r in runs]
            chosen = Counter(a["chosen"] for a in autos)
            a0 = autos[0]
            print(f"## {ds}, {kind}: {a0['situation']}\n")
            print(f"Validation: {a0['metric']} on {a0['validation']} (seed 0). Seeds: {len(runs)}.")
            print(f"Chosen: {', '.join(f'{n} x{c}' for n, c in chosen.most_common())}.\n")
            head = "| candidate | validation (mean of seeds) |"
            head += "".join(f" test all @{d} | test unseen @{d} |" for d in SIZES)
            print(head)
            print("|---" * (2 + 2 * len(SIZES)) + "|")
            names = list(a0["table"])
            best_test = {}
            for n in names:
                vals = [a["table"][n].get("mean") for a in autos]
                if any(v is None for v in vals):
                    print(f"| {n} | skipped: {a0['table'][n].get('skipped', '?')[:80]} |")
                    continue
                row = f"| {n}{' (chosen)' if chosen.get(n) else ''} | {np.mean(vals):.4f} |"
                for d in SIZES:
                    for m in ("ndcg@10", "ndcg@10_unseen"):
                        xs = [r[f"auto:{n}"][d].get(m) for r in results]
                        row += f" {np.mean(xs):.4f} |" if None not in xs else " — |"
                        if None not in xs:
                            best_test.setdefault((d, m), []).append((np.mean(xs), n))
                print(row)
            for m, what in (("ndcg@10_unseen", "unseen"), ("ndcg@10", "all")):
                best = {d: max(v)[1] for (d, mm), v in best_test.items() if mm == m}
                if best:
                    where = ", ".join(f"@{d} {n}" for d, n in best.items())
                    print(f"\nBest on {what} test queries (seed means): {where}.")
            print()


if __name__ == "__main__":
    main()
