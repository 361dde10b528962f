"""Tables of docs/results/auto-budget-minilm: per byte budget, dataset and situation, what
auto chose per seed (method and code), every candidate's validation score at its best code
within the budget and that code's test nDCG@10 on all and unseen queries (seed means), and
the choice against the best free code with each seed's paired interval. Run from the
repository root:

  python docs/results/auto-budget-minilm/summarize.py > docs/results/auto-budget-minilm/summary.md
"""

import json
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _ci(v: dict) -> str:
    return f"{v['diff']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]"


def main() -> None:
    print("# method=auto with a byte budget on SciFact and NFCorpus (all-MiniLM-L6-v2)\n")
    print(f"Made by `{HERE.relative_to(HERE.parents[2]) / 'commands.sh'}`; one folder per run.")
    print("Codes only (no rescoring), float queries against the coded documents.\n")
    for bdir in sorted(HERE.glob("b*"), key=lambda p: -int(p.name[1:])):
        for ds in ("scifact", "nfcorpus"):
            for kind in ("judged", "unjudged"):
                runs = sorted(bdir.glob(f"{ds}-{kind}-*"))
                if not runs:
                    continue
                autos = [json.loads((r / "auto.json").read_text()) for r in runs]
                budgets = [json.loads((r / "results.json").read_text())["budget"] for r in runs]
                a0 = autos[0]
                picks = Counter(f"{a['chosen']} {a['point']['size']}-d {a['point']['precision']}" for a in autos)  # fmt: skip
                print(f"## {budgets[0]['budget_bytes']} B, {ds}, {kind}: {a0['situation']}\n")
                print(
                    f"Validation: {a0['metric']} on {a0['validation']} (seed 0). Seeds: {len(runs)}."
                )
                print(f"Chosen: {', '.join(f'{n} x{c}' for n, c in picks.most_common())}.\n")
                print(
                    "| candidate | best code on validation (seeds) | validation | test all | test unseen |"
                )
                print("|---|---|---|---|---|")
                for n in a0["table"]:
                    if any("score" not in a["table"][n] for a in autos):
                        print(f"| {n} | skipped | | | |")
                        continue
                    codes = Counter(a["table"][n]["best"] for a in autos)
                    val = np.mean([a["table"][n]["score"] for a in autos])
                    rows = [b["candidates"][n] for b in budgets]
                    allq = np.mean([r["all"] for r in rows])
                    uns = [r.get("unseen") for r in rows]
                    uns_s = f"{np.mean(uns):.4f}" if None not in uns else "—"
                    mark = " (chosen)" if any(a["chosen"] == n for a in autos) else ""
                    where = ", ".join(f"{c} x{k}" for c, k in codes.most_common())
                    print(f"| {n}{mark} | {where} | {val:.4f} | {allq:.4f} | {uns_s} |")
                print()
                for b in budgets:
                    v = b.get("versus")
                    seed = runs[budgets.index(b)].name.rsplit("-", 1)[1]
                    c = b["candidates"][b["chosen"]]
                    if v is None:
                        print(f"- seed {seed}: chose the free {b['chosen']} {c['point']}.")
                        continue
                    unseen = f", unseen {_ci(v['unseen'])}" if "unseen" in v else ""
                    print(
                        f"- seed {seed}: {b['chosen']} {c['point']} vs the best free code on "
                        f"validation ({v['method']} {v['point']}): all {_ci(v['all'])}{unseen}."
                    )
                print()


if __name__ == "__main__":
    main()
