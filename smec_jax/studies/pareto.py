"""The Pareto report: nDCG@10 against bytes per document, for every method x code x funnel.

Each method (fitted as ``launch.reproduce`` fits it, resuming its runs in
``workdir/runs``) is scored at every ladder size and precision of :mod:`smec_jax.core.codes`,
with symmetric and asymmetric scoring, and, for nested compressors, as funnels (a shortlist
of 100 from a cheap code, rescored with the full-size float16 codes). A point's cost is the
bytes each document takes in the index. Per budget, each method's configuration is chosen
on the validation queries carved from the training split (as training does), never on
test; its test nDCG@10 is reported with a paired bootstrap interval of its difference from
PCA's choice. The frontier (no cheaper point scores higher) is marked on the test points.

Nested compressors other than truncation also get funnels rescored with the original
embeddings (as float16: the same bytes read). "SMEC variants" (SMEC and the methods built
on its trainer, :data:`smec_methods.VARIANTS`) are set against every other method, the
baselines, per budget of :data:`GOAL_BUDGETS`.

Writes ``pareto.json`` (every point, mean and std over seeds), ``pareto.md``, ``pareto.png``,
``variants.png`` (the variants against the baselines per budget) and ``per_query.npz``
(every point's per-query test nDCG@10, to recompute any interval; :func:`rerender` rebuilds
the rest from it and ``pareto.json``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from smec_jax import files, methods
from smec_jax.core import codes
from smec_jax.datasets import sources
from smec_jax.datasets.data import DataError
from smec_jax.evaluation import reporting, stats
from smec_jax.evaluation.evaluator import SCORINGS, Evaluator
from smec_jax.methods import smec as smec_methods
from smec_jax.progress import eta
from smec_jax.training import splits

GRID = [("float32", "symmetric"), ("float16", "symmetric")] + [
    (p, s) for p in ("int8", "int4", "int2", "binary", "binary_itq") for s in SCORINGS
]
FUNNEL_FIRST = ("binary", "int2")
SHORTLIST = 100
DEFAULT_METHODS = (
    "truncate",
    "pca",
    "search_adaptor",
    "matryoshka_adaptor",
    "csr",
    "smec",
    "smec_binary",
)
BUDGETS = (16, 32, 64, 128, 256)
GOAL_BUDGETS = (16, 32, 64, 128)  # the budgets where SMEC is compared with every baseline


@dataclasses.dataclass
class Point:
    label: str
    bytes: int
    run: object  # (evaluator, qids) -> per-query metrics
    rescore_bytes: int = 0


CSR_KS = (2, 4, 8, 16, 32, 64)
# faiss's product quantizers as peers on the bytes axis: m sub-quantizers of 8 bits (m
# bytes), with and without OPQ's learned rotation, and RaBitQ (1 bit per dim plus per-vector
# factors), each trained on the corpus's vectors at that size; float queries.
PQ_BYTES = (8, 16, 32, 64)
FREE = ("truncate", "pca")  # the free methods: "best free code" is chosen among their points


def faiss_points(comp, ladder, pq_bytes=PQ_BYTES, opq_iterations=None) -> list[Point]:
    """faiss PQ / OPQ+PQ at ``pq_bytes`` (where m divides the size) and RaBitQ on
    ``comp``'s vectors at each size, priced as faiss stores a vector (``sa_code_size``);
    ``opq_iterations``: OPQ's iterations (None: faiss's default, 50)."""
    from smec_jax.serving import faiss_index

    faiss = faiss_index.faiss_module()
    out = []
    for d in ladder:
        ms = [m for m in pq_bytes if m <= d and d % m == 0]
        specs = [(f"PQ{m}", f"PQ{m}") for m in ms] + [
            (f"OPQ{m},PQ{m}", f"OPQ{m} PQ{m}") for m in ms
        ]
        specs.append(("RaBitQ", "RaBitQ"))
        for spec, label in specs:
            size = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT).sa_code_size()
            out.append(
                Point(
                    f"{d}-d faiss {label}",
                    int(size),
                    lambda ev, q, d=d, spec=spec: ev.per_query_faiss(
                        comp, d, q, spec, opq_iterations
                    ),
                )
            )
    return out


def points(comp, ladder, nested: bool, original=None) -> list[Point]:
    """Every (size, precision, scoring) code of ``comp``, and its funnels if it nests; a
    sparse code (CSR) at k active latents, priced at its indices plus float16 values.

    With ``original`` (truncation: the original embeddings), a nested compressor also gets
    funnels whose shortlist is rescored with the original full-size float16 vectors instead
    of its own: the same bytes in the index and the same bytes read per query."""
    if getattr(comp, "product_codes", False):  # a learned product quantizer: m bytes
        return [
            Point(f"learned PQ{m}", m, lambda ev, q, m=m: ev.per_query(comp, m, q))
            for m in comp.sizes
        ]
    if comp.sparse:
        return [
            Point(
                f"{k}-sparse", comp.bytes_per_vector(k), lambda ev, q, k=k: ev.per_query(comp, k, q)
            )
            for k in CSR_KS
        ]
    out = []
    for d in ladder:
        for p, s in GRID:
            tag = "" if p in ("float32", "float16") else f" {s[:4]}"
            out.append(
                Point(
                    f"{d}-d {p}{tag}",
                    codes.bytes_per_vector(p, d),
                    lambda ev, q, d=d, p=p, s=s: ev.per_query(comp, d, q, p, s),
                )
            )
    if nested:
        top = ladder[0]
        for d in ladder[1:]:
            for p in FUNNEL_FIRST:
                out.append(
                    Point(
                        f"funnel {d}-d {p} top {SHORTLIST} -> {top}-d float16",
                        codes.bytes_per_vector(p, d),
                        lambda ev, q, d=d, p=p: ev.per_query_funnel(
                            comp, (d, p, "symmetric"), SHORTLIST, (top, "float16"), q
                        ),
                        rescore_bytes=SHORTLIST * codes.bytes_per_vector("float16", top),
                    )
                )
                if original is None:
                    continue
                out.append(
                    Point(
                        f"funnel {d}-d {p} top {SHORTLIST} -> original {top}-d float16",
                        codes.bytes_per_vector(p, d),
                        lambda ev, q, d=d, p=p: ev.per_query_funnel(
                            comp, (d, p, "symmetric"), SHORTLIST, (top, "float16"), q, original
                        ),
                        rescore_bytes=SHORTLIST * codes.bytes_per_vector("float16", top),
                    )
                )
    return out


def _fixed_rule(p: dict) -> tuple:
    """Without validation: the most bytes, then the largest size, then asymmetric scoring,
    no funnel, and a funnel's own rescoring (a rule chosen before any score is seen)."""
    size = int(p["config"].split("-")[0].split()[-1])
    cfg = p["config"]
    return (p["bytes"], size, "asym" in cfg, not cfg.startswith("funnel"), "original" not in cfg)


def frontier(rows: list[dict], key: str) -> list[str]:
    """Labels of the points no cheaper-or-equal point beats on ``key``."""
    best, out = -np.inf, []
    for r in sorted(rows, key=lambda r: (r["bytes"], -r[key])):
        if r[key] > best:
            best = r[key]
            out.append(r["name"])
    return out


def run(
    config,
    workdir: str | Path,
    method_names=DEFAULT_METHODS,
    seeds=(0, 1, 2),
    faiss_codes=True,
    pq_bytes=PQ_BYTES,
    opq_iterations=None,
) -> dict:
    """Scores every point of every method and seed; writes the report. See module doc.
    ``faiss_codes``: also faiss's PQ and OPQ+PQ codes at ``pq_bytes`` and RaBitQ codes of
    every dense method (:func:`faiss_points`; ``opq_iterations`` None: faiss's 50)."""
    import time

    methods.validate(config)
    files.check_workdir(workdir)
    for m in method_names:
        methods.get(m)
    wd = Path(workdir)
    ds = sources.load(config.data)
    test = Evaluator.from_config(ds, config.eval)
    supervised = config.train.split in ds.qrels
    val_ev = (
        Evaluator.from_config(ds, config.eval, split=config.train.split) if supervised else None
    )
    jobs = [(m, s) for m in method_names for s in (seeds if methods.get(m).seeded else seeds[:1])]
    original = methods.get("truncate").fit(config, ds, None, verbose=False).compressor
    per_query, rows, start = {}, {}, time.perf_counter()
    for i, (m, seed) in enumerate(jobs):
        el = time.perf_counter() - start
        print(
            f"[pareto {i + 1}/{len(jobs)}] {m} seed {seed} | ETA {eta(el, i, len(jobs))}",
            flush=True,
        )
        cfg = config.copy_and_resolve_references()
        cfg.method, cfg.seed = m, seed
        comp = (
            methods.get(m)
            .fit(cfg, ds, wd / "runs" / f"{m}-s{seed}" / "train", verbose=False)
            .compressor
        )
        val_q = []
        if val_ev is not None:
            vs = splits.split_train_val(
                ds, cfg.train.split, cfg.train.val_fraction, seed, cfg.train.val_split
            )
            val_q = vs.val
        # Rescoring with the original embeddings: for every nested compressor but
        # truncation, whose own funnels are exactly that.
        orig = None if m == "truncate" else original
        pts = points(comp, tuple(config.ladder), comp.nests, orig)
        if faiss_codes and not comp.sparse and not getattr(comp, "product_codes", False):
            pts += faiss_points(comp, tuple(config.ladder), pq_bytes, opq_iterations)
        for pt in pts:
            name = f"{m}: {pt.label}"
            t = pt.run(test, None)["ndcg@10"]
            v = float(pt.run(val_ev, val_q)["ndcg@10"].mean()) if val_q else float("nan")
            per_query.setdefault(name, []).append(t)
            r = rows.setdefault(
                name,
                {
                    "name": name,
                    "method": m,
                    "config": pt.label,
                    "bytes": pt.bytes,
                    "rescore_bytes_per_query": pt.rescore_bytes,
                    "val": [],
                    "test": [],
                    "test_unseen": [],
                },
            )
            r["val"].append(v)
            r["test"].append(float(t.mean()))
            if test.unseen_mask.any():
                r["test_unseen"].append(float(t[test.unseen_mask].mean()))
    full_name = f"truncate: {config.ladder[0]}-d float32"
    summary = _summarize(rows, per_query, test.unseen_mask, method_names, full_name)
    doc = {
        "dataset": ds.name,
        "encoder": ds.encoder,
        "split": test.split,
        "queries": len(test.qids),
        "unseen_queries": test.n_unseen,
        "seeds": list(seeds),
        "full_size": full_name,
        **summary,
    }
    wd.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(wd / "per_query.npz", suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            qids=np.asarray(test.qids),
            unseen=test.unseen_mask,
            names=np.asarray(list(per_query)),
            **{f"p{i}": np.stack(v) for i, v in enumerate(per_query.values())},
        )
    _write(doc, wd)
    print(f"wrote {wd}/pareto.md, pareto.json, pareto.png and per_query.npz")
    return doc


def _write(doc: dict, wd: Path) -> None:
    files.write_json(wd / "pareto.json", doc)
    plot(doc, wd / "pareto.png")
    if any(doc.get("smec_vs_baselines", {}).values()):
        plot_variants(doc, wd / "variants.png")
    files.atomic_write(wd / "pareto.md", markdown(doc))
    print(markdown(doc))


def rerender(workdir: str | Path) -> dict:
    """Recomputes every choice, interval and table of a written report from its saved
    ``pareto.json`` points and ``per_query.npz`` (no fitting, no scoring), and rewrites
    ``pareto.json``, ``pareto.md`` and ``pareto.png``: a report written by an older
    version gains the newer sections."""
    wd = Path(workdir)
    for f in ("pareto.json", "per_query.npz"):
        if not (wd / f).is_file():
            raise DataError(f"{wd / f} is missing: run launch.pareto there first")
    doc = json.loads((wd / "pareto.json").read_text())
    per_query, unseen = _load_saved(wd)
    missing = [p["name"] for p in doc["points"] if p["name"] not in per_query]
    if missing:
        raise ValueError(f"{wd / 'per_query.npz'} has no scores for {missing[0]!r}")
    method_names = list(dict.fromkeys(p["method"] for p in doc["points"]))
    full_name = doc.get("full_size") or _largest_truncate_float32(doc["points"])
    keep = ("dataset", "encoder", "split", "queries", "unseen_queries", "seeds")
    doc = {
        **{k: doc[k] for k in keep if k in doc},
        "full_size": full_name,
        **summarize_points(doc["points"], per_query, unseen, method_names, full_name),
    }
    _write(doc, wd)
    print(f"rewrote {wd}/pareto.md, pareto.json and pareto.png from the saved scores")
    return doc


def _largest_truncate_float32(points_out) -> str | None:
    full = [p for p in points_out if p["method"] == "truncate" and p["config"].endswith("float32")]
    return max(full, key=lambda p: p["bytes"])["name"] if full else None


def _summarize(rows, per_query, unseen_mask, method_names, full_name=None) -> dict:
    points_out = []
    for r in rows.values():
        out = {k: r[k] for k in ("name", "method", "config", "bytes", "rescore_bytes_per_query")}
        for k in ("val", "test", "test_unseen"):
            if r[k]:
                out[k] = float(np.mean(r[k]))
                out[f"{k}_std"] = float(np.std(r[k], ddof=1)) if len(r[k]) > 1 else 0.0
        points_out.append(out)
    return summarize_points(points_out, per_query, unseen_mask, method_names, full_name)


def summarize_points(points_out, per_query, unseen_mask, method_names, full_name=None) -> dict:
    """Frontier, per-budget choices, quantization-aware rows and the SMEC-variant check from
    the points (means over seeds) and their per-query scores."""
    fronts = {"test": frontier(points_out, "test")}
    if unseen_mask.any():
        fronts["test_unseen"] = frontier(points_out, "test_unseen")
    budgets = _budget_choices(points_out, per_query, unseen_mask, method_names, True)
    codes_only = _budget_choices(points_out, per_query, unseen_mask, method_names, False)
    return {
        "points": points_out,
        "frontier": fronts,
        "budgets": budgets,
        "budgets_codes_only": codes_only,
        "quantization_aware": _quantization_aware(points_out, per_query, unseen_mask, method_names),
        "smec_vs_baselines": {
            "funnels allowed": _variants_vs_baselines(
                points_out, per_query, unseen_mask, budgets, True, full_name
            ),
            "codes only": _variants_vs_baselines(
                points_out, per_query, unseen_mask, codes_only, False, full_name
            ),
        },
    }


def is_smec_variant(method: str) -> bool:
    """SMEC or a method built on its trainer (:data:`smec_methods.VARIANTS`)."""
    return method in smec_methods.VARIANTS


def _variants_vs_baselines(points_out, per_query, unseen_mask, chosen, allow_funnel, full_name):
    """Per budget of :data:`GOAL_BUDGETS`, SMEC variants against every baseline.

    Two kinds of row. ``pick="validation"``: the variant and its configuration chosen
    together on validation among the points of every SMEC variant on the axis that fit the
    budget (the same rule as one method's choice; with many near-equal variants it is a
    noisy choice). ``pick="method"``: each variant's own validation choice (``chosen``), for
    a user who fixed the variant in advance. Each baseline keeps its own validation choice.
    Rows give the paired bootstrap interval of variant minus baseline (all and unseen
    queries) and the share of the full-size float score (``full_name``: the original
    embedding).
    """
    variants = [m for m in dict.fromkeys(p["method"] for p in points_out) if is_smec_variant(m)]
    pts = {p["name"]: p for p in points_out}
    if not variants or "val" not in points_out[0] or np.isnan(points_out[0]["val"]):
        return []
    full = pts.get(full_name)
    out = []
    for b in GOAL_BUDGETS:
        cands = [
            p
            for p in points_out
            if p["method"] in variants
            and p["bytes"] <= b
            and (allow_funnel or not p["config"].startswith("funnel"))
        ]
        baselines = {m: c for m, c in chosen[str(b)].items() if m not in variants}
        if not cands or not baselines:
            continue
        picks = [("validation", max(cands, key=lambda p: (p["val"], -p["bytes"])))]
        picks += [
            ("method", pts[chosen[str(b)][m]["name"]]) for m in variants if m in chosen[str(b)]
        ]
        for how, pick in picks:
            out.append(_versus_baselines(b, how, pick, baselines, per_query, unseen_mask, full))
    return out


def _versus_baselines(budget, how, pick, baselines, per_query, unseen_mask, full) -> dict:
    a = np.stack(per_query[pick["name"]])
    row = {
        "budget": budget,
        "pick": how,
        "name": pick["name"],
        "method": pick["method"],
        "config": pick["config"],
        "bytes": pick["bytes"],
        **{k: pick[k] for k in ("test", "test_unseen") if k in pick},
        "vs": {},
    }
    for key in ("test", "test_unseen"):
        if full is not None and key in pick:
            row[f"share_of_full_{key}"] = pick[key] / full[key]
    for m, c in baselines.items():
        bq = np.stack(per_query[c["name"]])
        vs = {"name": c["name"], "all": stats.paired_bootstrap(a, bq)}
        if unseen_mask.any():
            vs["unseen"] = stats.paired_bootstrap(a[:, unseen_mask], bq[:, unseen_mask])
        row["vs"][m] = vs
    for key in ("all", "unseen"):
        diffs = {m: v[key] for m, v in row["vs"].items() if key in v}
        if diffs:
            closest = min(diffs, key=lambda m: diffs[m]["diff"])
            row[f"closest_{key}"] = closest
            row[f"ahead_of_every_baseline_{key}"] = diffs[closest]["diff"] > 0
            row[f"clearly_ahead_of_every_baseline_{key}"] = diffs[closest]["lo"] > 0
    return row


def _trained_on(method: str) -> str:
    return methods.get(method).overrides.get("train.quantize", "none")


def _quantization_aware(points_out, per_query, unseen_mask, method_names) -> list[dict]:
    """Each quantization-aware method (``train.quantize`` set) against the post-hoc codes
    of the same trainer without it (``smec``): every code and funnel of the precision it
    trained for, the paired bootstrap interval of the difference (all / unseen queries)."""
    if "smec" not in method_names:
        return []
    pts = {p["name"]: p for p in points_out}
    out = []
    for m in method_names:
        q = _trained_on(m)
        if q == "none":
            continue
        for p in points_out:
            ref = pts.get(f"smec: {p['config']}")
            if p["method"] != m or ref is None or q not in p["config"].split():
                continue
            a, b = np.stack(per_query[p["name"]]), np.stack(per_query[ref["name"]])
            row = {
                "method": m,
                "config": p["config"],
                "bytes": p["bytes"],
                **{k: p[k] for k in ("test", "test_unseen") if k in p},
                **{f"posthoc_{k}": ref[k] for k in ("test", "test_unseen") if k in ref},
                "vs_posthoc": stats.paired_bootstrap(a, b),
            }
            if unseen_mask.any():
                u = unseen_mask
                row["vs_posthoc_unseen"] = stats.paired_bootstrap(a[:, u], b[:, u])
            out.append(row)
    return out


def _variants_table(doc: dict) -> str:
    full = doc.get("full_size")
    lines = [
        "## The best SMEC variant against every baseline",
        "",
        "SMEC variants (SMEC and the methods built on its trainer) against each other "
        "method's own validation choice (the tables above). Per budget, first the "
        "configuration chosen on validation among all the points of every variant on the "
        "axis (**best on validation**: what a user who lets validation pick the variant "
        "gets; among many near-equal variants a noisy choice), then each variant's own "
        "validation choice (for a user who fixed the variant in advance). Test nDCG@10, all "
        "/ unseen queries; "
        + (f"% of full: of `{full}`; " if full else "")
        + "then the difference from each baseline with its paired bootstrap 95% interval "
        "(queries and seeds resampled), unseen queries where there are any, else all; "
        "**bold**: the interval excludes zero. Last column: the baseline closest to it.",
    ]
    for what, rows in doc["smec_vs_baselines"].items():
        if not rows:
            continue
        key = "unseen" if "test_unseen" in rows[0] else "all"
        base = list(rows[0]["vs"])
        lines += [
            "",
            f"### {what}",
            "",
            "| budget | SMEC variant (pick) | all / unseen | % of full | "
            + " | ".join(f"vs {m}" for m in base)
            + " | ahead of every baseline? |",
            "|---" * (5 + len(base)) + "|",
        ]
        for r in rows:
            score = " / ".join(f"{r[k]:.4f}" for k in ("test", "test_unseen") if k in r)
            share = " / ".join(
                f"{100 * r[f'share_of_full_{k}']:.1f}%"
                for k in ("test", "test_unseen")
                if f"share_of_full_{k}" in r
            )
            cells = [reporting.interval(r["vs"][m][key]) if m in r["vs"] else "-" for m in base]
            closest = r[f"closest_{key}"]
            d = r["vs"][closest][key]
            if r[f"clearly_ahead_of_every_baseline_{key}"]:
                verdict = f"yes, every interval above zero (closest: {closest})"
            elif r[f"ahead_of_every_baseline_{key}"]:
                verdict = f"in the mean only (closest: {closest}, {d['diff']:+.4f})"
            else:
                verdict = f"no: behind {closest} by {-d['diff']:.4f}"
            pick = "**best on validation**: " if r["pick"] == "validation" else ""
            lines.append(
                f"| {r['budget']} B | {pick}{r['method']}: {r['config']} ({r['bytes']} B) | {score} | "
                f"{share or '-'} | " + " | ".join(cells) + f" | {verdict} |"
            )
    return "\n".join(lines)


def _quantization_aware_table(rows: list[dict]) -> str:
    lines = [
        "## Quantization-aware training vs post-hoc codes of `smec`",
        "",
        "Each method trained on the codes of one precision (straight-through), at every code "
        "and funnel of that precision, against the same code of plain `smec` (post-hoc "
        "calibration on the corpus, the same for both); test nDCG@10 mean over seeds, all / "
        "unseen queries, and the paired bootstrap 95% interval of the difference.",
        "",
        "| method | code | trained | post-hoc | difference (all) | difference (unseen) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        pair = [
            " / ".join(f"{r[pre + k]:.4f}" for k in ("test", "test_unseen") if pre + k in r)
            for pre in ("", "posthoc_")
        ]
        lines.append(
            f"| {r['method']} | {r['config']} ({r['bytes']} B) | {pair[0]} | {pair[1]} | "
            f"{_ci(r, 'vs_posthoc')} | {_ci(r, 'vs_posthoc_unseen')} |"
        )
    return "\n".join(lines)


def _budget_choices(points_out, per_query, unseen_mask, method_names, allow_funnel) -> dict:
    """Per budget, each method's validation-chosen point (funnels allowed or not)."""
    has_unseen = bool(unseen_mask.any())
    budgets = {}
    for b in BUDGETS:
        chosen = {}
        for m in method_names:
            cands = [
                p
                for p in points_out
                if p["method"] == m
                and p["bytes"] <= b
                and (allow_funnel or not p["config"].startswith("funnel"))
            ]
            if not cands:
                continue
            if not np.isnan(cands[0].get("val", np.nan)):
                pick, how = max(cands, key=lambda p: (p["val"], -p["bytes"])), "validation"
            else:  # no validation queries: a rule fixed in advance, never the test scores
                pick, how = max(cands, key=_fixed_rule), "fixed rule (no validation queries)"
            chosen[m] = {
                "name": pick["name"],
                "config": pick["config"],
                "bytes": pick["bytes"],
                "chosen_on": how,
                **{
                    k: pick[k]
                    for k in ("test", "test_std", "test_unseen", "test_unseen_std")
                    if k in pick
                },
            }
        free = [
            p
            for p in points_out
            if p["method"] in FREE
            and p["bytes"] <= b
            and (allow_funnel or not p["config"].startswith("funnel"))
        ]
        if free and not np.isnan(free[0].get("val", np.nan)):  # chosen on validation only
            pick = max(free, key=lambda p: (p["val"], -p["bytes"]))
            chosen["best free code"] = {
                "name": pick["name"],
                "config": f"{pick['method']} {pick['config']}",
                "bytes": pick["bytes"],
                "chosen_on": "validation, among the free methods' points",
                **{
                    k: pick[k]
                    for k in ("test", "test_std", "test_unseen", "test_unseen_std")
                    if k in pick
                },
            }
        ref = chosen.get("pca")
        for m, c in chosen.items():
            if ref is None or m == "pca":
                continue
            a, bq = np.stack(per_query[c["name"]]), np.stack(per_query[ref["name"]])
            c["vs_pca"] = stats.paired_bootstrap(a, bq)
            if has_unseen:
                u = unseen_mask
                c["vs_pca_unseen"] = stats.paired_bootstrap(a[:, u], bq[:, u])
        budgets[str(b)] = chosen
    return budgets


def _cell(c: dict, k: str) -> str:
    return f"{c[k]:.4f} ± {c[k + '_std']:.4f}" if k in c else "-"


def _ci(c: dict, k: str) -> str:
    return reporting.interval(c[k], bold=False) if k in c else "-"


def _budget_table(b: str, chosen: dict) -> str:
    lines = [
        f"### {b} bytes per document",
        "",
        "| method | configuration | all | unseen | vs PCA (all) | vs PCA (unseen) |",
        "|---|---|---|---|---|---|",
    ]
    for m, c in chosen.items():
        lines.append(
            f"| {m} | {c['config']} ({c['bytes']} B) | {_cell(c, 'test')} | "
            f"{_cell(c, 'test_unseen')} | {_ci(c, 'vs_pca')} | {_ci(c, 'vs_pca_unseen')} |"
        )
    return "\n".join(lines)


def markdown(doc: dict) -> str:
    head = (
        f"# Bytes per document vs nDCG@10: {doc['dataset']} ({doc['encoder']}), "
        f"{doc['split']} split, seeds {doc['seeds']}"
    )
    parts = [
        head,
        "Per budget (bytes each document takes in the index), each method's configuration "
        "chosen on validation queries carved from the training split (on a corpus without "
        "training queries: the most bytes, largest size, asymmetric scoring, fixed in "
        "advance); test nDCG@10 mean ± std over seeds, all / unseen queries, and the paired "
        "bootstrap 95% interval of the difference from PCA's choice (queries and seeds "
        "resampled). `symm`: queries coded like documents; `asym`: float queries against "
        "coded documents; a funnel's top 100 is rescored with the method's own full-size "
        "float16 vectors (`-> original`: with the original embeddings, as float16), which "
        "it reads from outside the index (`rescore_bytes_per_query` in pareto.json). "
        "Per-query scores: `per_query.npz`.",
    ]
    tables = [("budgets", "funnels allowed"), ("budgets_codes_only", "codes only, no funnel")]
    for key, what in tables:
        parts.append(f"## Per budget, {what}")
        parts += [_budget_table(b, chosen) for b, chosen in doc.get(key, {}).items()]
    if doc.get("quantization_aware"):
        parts.append(_quantization_aware_table(doc["quantization_aware"]))
    if any(doc.get("smec_vs_baselines", {}).values()):
        parts.append(_variants_table(doc))
    pts = {p["name"]: p for p in doc["points"]}
    for key, title in (("test", "all queries"), ("test_unseen", "unseen queries")):
        if key not in doc["frontier"]:
            continue
        lines = [
            f"## Frontier, {title} (test points: descriptive, not a selection)",
            "",
            "| bytes | point | nDCG@10 |",
            "|---|---|---|",
        ]
        for name in doc["frontier"][key]:
            lines.append(f"| {pts[name]['bytes']} | {name} | {pts[name][key]:.4f} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot(doc: dict, path) -> None:
    plt = reporting.pyplot()
    panels = [k for k in ("test", "test_unseen") if k in doc["frontier"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels) + 2.5, 5.2), squeeze=False)
    method_names = list(dict.fromkeys(p["method"] for p in doc["points"]))
    for ax, key in zip(axes[0], panels, strict=True):
        for i, m in enumerate(method_names):
            pts = [p for p in doc["points"] if p["method"] == m and key in p]
            for fun, marker in ((False, "o"), (True, "^")):
                sel = [p for p in pts if p["config"].startswith("funnel") == fun]
                ax.scatter(
                    [p["bytes"] for p in sel],
                    [p[key] for p in sel],
                    s=12,
                    marker=marker,
                    color=f"C{i % 10}",
                    alpha=0.6,
                    label=f"{m}{' (funnel)' if fun else ''}" if sel else None,
                )
        front = [p for p in doc["points"] if p["name"] in doc["frontier"][key]]
        front.sort(key=lambda p: p["bytes"])
        ax.step(
            [p["bytes"] for p in front],
            [p[key] for p in front],
            where="post",
            color="k",
            linewidth=1,
            label="frontier",
        )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bytes per document")
        ax.set_ylabel("nDCG@10")
        ax.set_title(
            f"{doc['dataset']} {doc['split']}: {'unseen' if 'unseen' in key else 'all'} queries"
        )
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle(f"encoder: {doc['encoder']}; o codes, ^ funnels (shortlist rescored)")
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / fig.get_figwidth(), 1))
    reporting.save_figure(fig, path)


def plot_variants(doc: dict, path) -> None:
    """Per budget, each baseline's and each SMEC variant's validation choice (test nDCG@10,
    unseen queries where there are any), funnels allowed and codes only, with the full
    size as a line: the section "The best SMEC variant against every baseline" as a plot."""
    plt = reporting.pyplot()
    key = "test_unseen" if doc.get("unseen_queries") else "test"
    panels = [w for w, rows in doc["smec_vs_baselines"].items() if rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels) + 2.5, 4.8), squeeze=False)
    full = {p["name"]: p for p in doc["points"]}.get(doc.get("full_size"))
    for ax, what in zip(axes[0], panels, strict=True):
        chosen = doc["budgets" if what == "funnels allowed" else "budgets_codes_only"]
        budgets = [b for b in GOAL_BUDGETS if str(b) in chosen]
        names = list(dict.fromkeys(m for b in budgets for m in chosen[str(b)]))
        colours = plt.get_cmap("tab20").colors
        below = []
        for i, m in enumerate(names):
            ys = [chosen[str(b)].get(m, {}).get(key, np.nan) for b in budgets]
            ours = is_smec_variant(m)
            if full is not None and np.nanmax(ys) < 0.75 * full[key]:
                below.append(m)
            ax.plot(
                budgets,
                ys,
                marker="o" if ours else "s",
                linestyle="-" if ours else ":",
                color=colours[(2 * i) % 20 + (i // 10) % 2],
                linewidth=2 if ours else 1,
                label=m + ("" if ours else " (baseline)"),
            )
        if full is not None:
            ax.axhline(full[key], color="k", linewidth=1, linestyle="--", label="full size")
            ax.set_ylim(bottom=0.75 * full[key])  # the region where the goals are
        if below:
            what = f"{what}; below the axis: {', '.join(below)}"
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [f"{b} B" for b in budgets])
        ax.set_xlabel("bytes per document (budget)")
        ax.set_ylabel(f"nDCG@10, {'unseen' if key == 'test_unseen' else 'all'} queries")
        ax.set_title(f"{what}: each method's validation choice")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle(
        f"{doc['dataset']} ({doc['encoder']}): SMEC variants (solid) vs baselines (dotted)"
    )
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / fig.get_figwidth(), 1))
    reporting.save_figure(fig, path)


def load_per_query(workdir) -> dict[str, np.ndarray]:
    """name -> (seeds, queries) per-query test nDCG@10 from ``per_query.npz``."""
    return _load_saved(workdir)[0]


def _load_saved(workdir) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`load_per_query` and the unseen-query mask, in one read of ``per_query.npz``."""
    with np.load(Path(workdir) / "per_query.npz", allow_pickle=False) as f:
        names = list(f["names"])
        return {n: f[f"p{i}"] for i, n in enumerate(names)}, np.asarray(f["unseen"], bool)


def json_dump(doc) -> str:
    return json.dumps(doc, indent=1)
