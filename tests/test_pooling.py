"""Pooled training data (smec_jax/datasets/pooling.py) and the leave-one-corpus-out analysis
(smec_jax/studies/analyses/pooled.py): what is pooled is exactly the parts, and a compressor scored
on a corpus never trained on that corpus's judgments."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from smec_jax.datasets import pooling
from smec_jax.datasets.data import DataError
from smec_jax.datasets.synthetic import make_synthetic
from smec_jax.evaluation import stats
from smec_jax.studies import analyses
from smec_jax.training import train
from tests.test_train import tiny_config


def _named(name: str, seed: int, n_train: int = 40, n_test: int = 20):
    d = make_synthetic(n_docs=150, n_train=n_train, n_test=n_test, dim=32, rank=8, seed=seed)
    return dataclasses.replace(d, name=name)


def test_pool_holds_exactly_each_part_row_by_row_and_no_unlabelled_query():
    a, b, c = _named("a", 1), _named("b", 2), _named("c", 3, n_train=0)
    p = pooling.pool([(a, "train"), (b, "test"), (c, None)])
    assert p.name == "pool(a:train+b:test+c)"
    assert set(p.qrels) == {"train"}
    # brute force: every pooled row is the part's row of the unprefixed id
    for part, split in ((a, "train"), (b, "test"), (c, None)):
        crow = {i: r for r, i in enumerate(part.corpus_ids)}
        for r, pid in enumerate(p.corpus_ids):
            name, _, i = pid.partition("/")
            if name == part.name:
                np.testing.assert_array_equal(p.corpus[r], part.corpus[crow[i]])
        want = {
            f"{part.name}/{q}": {f"{part.name}/{d}": g for d, g in rels.items()}
            for q, rels in (part.qrels[split].items() if split else ())
            if any(g > 0 for g in rels.values())
        }
        got = {q: r for q, r in p.qrels["train"].items() if q.startswith(part.name + "/")}
        assert got == want
        qrow = {i: r for r, i in enumerate(part.query_ids)}
        for r, pid in enumerate(p.query_ids):
            if pid.startswith(part.name + "/"):
                np.testing.assert_array_equal(p.queries[r], part.queries[qrow[pid[2:]]])
    assert len(p.corpus_ids) == 450 and len(set(p.corpus_ids)) == 450
    assert not any(q.startswith("c/") for q in p.query_ids)  # unlabelled: documents only
    assert p.judged_queries("train") == p.query_ids


def test_pool_refuses_mixed_encoders_repeated_names_missing_splits_and_no_labels():
    a, b = _named("a", 1), _named("b", 2)
    wide = dataclasses.replace(
        make_synthetic(n_docs=50, n_train=5, n_test=5, dim=16, rank=4), name="w"
    )
    with pytest.raises(DataError, match="pool embeddings of one encoder only"):
        pooling.pool([(a, "train"), (wide, "train")])
    with pytest.raises(DataError, match="given twice"):
        pooling.pool([(a, "train"), (a, None)])
    with pytest.raises(DataError, match="no split 'dev'"):
        pooling.pool([(a, "train"), (b, "dev")])
    with pytest.raises(DataError, match="no part is labelled"):
        pooling.pool([(a, None), (b, None)])
    assert pooling.parse_sources(" a:train, b ,") == [("a", "train"), ("b", None)]


@pytest.mark.slow
def test_leave_one_out_never_trains_on_the_target_judgments(
    tmp_path, monkeypatch, synthetic, capsys
):
    """Every pool a target's compressors train on holds no query of that target (recorded
    at train.train), and the report's means and intervals are the saved per-query scores."""
    others = {"other": _named("other", 5, n_train=0, n_test=30)}
    seen: list[tuple[str, set[str]]] = []
    real = train.train

    def recording(cfg, data, *a, **k):
        seen.append((data.name, {q.split("/")[0] for q in data.qrels.get("train", {})}))
        return real(cfg, data, *a, **k)

    monkeypatch.setattr(train, "train", recording)
    cfg = tiny_config()
    doc = analyses.run(
        cfg,
        str(tmp_path),
        ["pooled"],
        pool_sources="synthetic:train,other:test",
        pooled_methods=("smec",),
        pool_target_methods=("smec_unsup",),
        load_target=lambda _cfg, name, *a: others[name],
        seeds=(0, 1),
    )["pooled"]
    pools = {name: labelled for name, labelled in seen if name.startswith("pool(")}
    assert pools == {
        "pool(synthetic+other:test)": {"other"},
        "pool(other+synthetic:train)": {"synthetic"},
        "pool(synthetic:train+other:test)": {"synthetic", "other"},
    }
    # every fit announced once with its number: per target smec_unsup and smec x 2 seeds,
    # and smec with the target's own labels on synthetic (the one with training judgments)
    counted = re.findall(r"\[fit (\d+)/(\d+)\] .* \| ETA ", capsys.readouterr().out)
    assert counted == [(str(i), "10") for i in range(1, 11)]
    rows = doc["synthetic"]["results"]
    assert set(rows) == {
        "full size (no compression)",
        "truncate",
        "pca (fitted on target)",
        "smec_unsup (target, no labels)",
        "smec (pool, no target labels)",
        "smec (pool + target labels)",
    }
    assert "smec (pool + target labels)" not in doc["other"]["results"]  # its labels: test only
    name = "smec (pool, no target labels)"
    base = "pca (fitted on target)"
    saved = {}
    for target in ("synthetic", "other"):
        with np.load(tmp_path / "pooled_per_query" / f"{target}.npz") as f:
            saved[target] = {n: f[f"p{i}"] for i, n in enumerate(f["names"])}
            unseen = f["unseen"]
    assert saved["synthetic"][name].shape[:2] == (2, len(cfg.ladder))
    assert unseen.all()  # "other" has no training judgments: every test query is unseen
    for i, d in enumerate(cfg.ladder):
        assert float(saved["synthetic"][name][:, i].mean()) == pytest.approx(
            rows[name][str(d)]["ndcg@10"], abs=1e-6
        )
        both = [
            np.concatenate([saved[t][n][:, i] for t in ("synthetic", "other")], axis=1)
            for n in (name, base)
        ]
        assert doc["pooled_vs_pca"][name][str(d)]["all"] == stats.paired_bootstrap(*both)
    assert (tmp_path / "pooled_vs_pca.png").stat().st_size > 1000
    report = (tmp_path / "analysis.md").read_text()
    assert "Pooled corpora" in report and f"{rows[name]['8']['ndcg@10']:.4f}" in report


def test_sts_pairs_become_a_beir_folder_that_loads(tmp_path):
    """Pairs at or above the threshold (extra source columns ignored) are queries judging
    their second sentence; every other distinct sentence is one document, but no query's
    own text; the folder reads back."""
    from smec_jax.datasets import data

    lines = [
        "g\tf\t2012\t0001\t5.000\tA plane is taking off.\tAn air plane is taking off.",
        "g\tf\t2012\t0002\t1.500\tA man plays.\tA plane is taking off.",
        "g\tf\t2016\t0003\t4\tDriver backs up\tDriver backs into a stroller\tsrc\tsrc",
        "g\tf\t2012\t0004\t3.999\tCats.\tDogs.",
    ]
    csv = tmp_path / "sts-train.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = pooling.sts_to_beir(csv, tmp_path / "stsb")
    corpus = {r["text"]: r["_id"] for r in data.read_jsonl(out / "corpus.jsonl")}
    # a query's own text is no document: "A plane is taking off." and "Driver backs up"
    assert list(corpus) == [
        "An air plane is taking off.",
        "A man plays.",
        "Driver backs into a stroller",
        "Cats.",
        "Dogs.",
    ]
    queries = {r["_id"]: r["text"] for r in data.read_jsonl(out / "queries.jsonl")}
    assert queries == {"q1": "A plane is taking off.", "q3": "Driver backs up"}
    assert data.read_qrels(out / "qrels" / "train.tsv") == {
        "q1": {corpus["An air plane is taking off."]: 1},
        "q3": {corpus["Driver backs into a stroller"]: 1},
    }
    with pytest.raises(DataError, match="already exists"):
        pooling.sts_to_beir(csv, out)
    csv.write_text("g\tf\t2012\t0001\tfive\ta\tb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"sts-train.csv:1: score 'five' is not a number"):
        pooling.sts_to_beir(csv, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.writing").exists()
