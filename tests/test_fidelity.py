"""Label-free fidelity (launch.agreement): the top-k agreement of a compressor's map and of
free corpus codes with the full-size ranking, against loops over queries with numpy cosines
and python sets; and its one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from smec_jax.datasets.data import DataError, write_folder
from smec_jax.evaluation import fidelity


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _top(q, c, k):
    return [set(np.argsort(-(c @ v), kind="stable")[:k]) for v in q]


@pytest.fixture
def folder(tmp_path):
    """An embedding folder (300 docs, 40 queries, 32-d), a linear compressor to 16 and 8
    dims, and corpus codes (random, 16-d) for that corpus."""
    rng = np.random.default_rng(0)
    corpus = _unit(rng.normal(size=(300, 32))).astype(np.float32)
    queries = _unit(corpus[:40] + 0.3 * rng.normal(size=(40, 32))).astype(np.float32)
    ids = [f"d{i}" for i in range(300)]
    write_folder(
        tmp_path / "emb",
        {"corpus.npy": corpus, "queries.npy": queries},
        {"corpus_ids.txt": ids, "query_ids.txt": [f"q{i}" for i in range(40)]},
        {"model": "test"},
    )
    w = rng.normal(size=(32, 16)).astype(np.float32)
    np.savez(
        tmp_path / "compressor.npz",
        w=w,
        b=np.zeros(16, np.float32),
        sizes=np.array([16, 8]),
        kind=np.asarray("linear"),
        encoder=np.asarray(""),
    )
    codes = rng.normal(size=(300, 16)).astype(np.float32)
    np.savez(tmp_path / "corpus_codes.npz", ids=np.asarray(ids), codes=codes)
    return tmp_path, corpus, queries, w, codes


def test_top_k_agreement_counts_shared_rows():
    full = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    comp = np.array([[4, 3, 9, 10], [5, 6, 7, 8]])
    np.testing.assert_allclose(fidelity.top_k_agreement(full, comp), [0.5, 1.0])
    # a -1 (no document) in the reference counts for neither side
    np.testing.assert_allclose(fidelity.top_k_agreement([[1, 2, -1]], [[2, -1, 7]]), [0.5])


def test_map_and_codes_agreement_equal_brute_force(folder):
    tmp, corpus, queries, w, codes = folder
    doc = fidelity.run(
        tmp / "emb",
        tmp / "compressor.npz",
        tmp / "corpus_codes.npz",
        k=10,
        out=tmp / "agreement.json",
    )
    full = _top(queries, corpus, 10)
    for d in (16, 8):
        q = _unit(queries @ w[:, :d])
        for name, c in (("map", _unit(corpus @ w[:, :d])), ("codes", _unit(codes[:, :d]))):
            got = _top(q, c, 10)
            want = np.mean([len(a & b) / 10 for a, b in zip(full, got, strict=True)])
            assert doc[name][str(d)] == pytest.approx(want)
    assert 0 < doc["codes"]["8"] < doc["map"]["16"] < 1  # random codes keep little
    assert json.loads((tmp / "agreement.json").read_text()) == doc
    assert "codes" in fidelity.table(doc) and doc["queries"] == 40


def test_some_queries_against_another_compressor_with_a_paired_interval(folder):
    """--query_ids scores only the listed queries; --versus scores another compressor on
    them and the paired interval of the difference (a bootstrap over those queries)."""
    tmp, corpus, queries, w, _ = folder
    w2 = np.random.default_rng(5).normal(size=(32, 8)).astype(np.float32)
    np.savez(
        tmp / "other.npz", w=w2, b=np.zeros(8, np.float32), sizes=np.array([8]),
        kind=np.asarray("linear"), encoder=np.asarray(""),
    )  # fmt: skip
    picked = [3, 7, 11, 19, 30, 31, 38]
    (tmp / "ids.txt").write_text("".join(f"q{i}\n" for i in picked))
    doc = fidelity.run(
        tmp / "emb", tmp / "compressor.npz", k=10, query_ids=tmp / "ids.txt",
        versus=tmp / "other.npz",
    )  # fmt: skip
    assert doc["queries"] == len(picked) and list(doc["versus"]["diff"]) == ["8"]
    q = queries[picked]
    full = _top(q, corpus, 10)

    def per_query(m):
        got = _top(_unit(q @ m[:, :8]), _unit(corpus @ m[:, :8]), 10)
        return np.array([len(a & b) / 10 for a, b in zip(full, got, strict=True)])

    mine, theirs = per_query(w), per_query(w2)
    assert doc["map"]["8"] == pytest.approx(mine.mean())
    assert doc["versus"]["map"]["8"] == pytest.approx(theirs.mean())
    r = doc["versus"]["diff"]["8"]
    assert r["diff"] == pytest.approx(mine.mean() - theirs.mean())
    diffs = mine - theirs
    assert diffs.min() - 1e-9 <= r["lo"] <= r["diff"] <= r["hi"] <= diffs.max() + 1e-9
    assert "versus" in fidelity.table(doc)
    (tmp / "bad.txt").write_text("q3\nnope\n")
    with pytest.raises(DataError, match="bad.txt: query id 'nope' is not in"):
        fidelity.run(tmp / "emb", tmp / "compressor.npz", query_ids=tmp / "bad.txt")


def test_codes_of_another_corpus_and_bad_k_are_one_line_errors(folder):
    tmp, *_ = folder
    ids = [f"x{i}" for i in range(300)]
    np.savez(tmp / "other.npz", ids=np.asarray(ids), codes=np.zeros((300, 16), np.float32))
    with pytest.raises(DataError, match="row 0 is document 'x0'"):
        fidelity.run(tmp / "emb", tmp / "compressor.npz", tmp / "other.npz")
    with pytest.raises(DataError, match="not an embedding folder .*no corpus.npy, corpus_ids"):
        fidelity.run(tmp, tmp / "compressor.npz")
    with pytest.raises(ValueError, match="--k 301"):
        fidelity.run(tmp / "emb", tmp / "compressor.npz", k=301)


def test_command_prints_one_row_per_size(folder):
    tmp, *_ = folder
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.agreement",
            f"--embeddings={tmp / 'emb'}",
            f"--compressor={tmp / 'compressor.npz'}",
            "--k=5",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("top-5 agreement") and [r.split()[0] for r in lines[2:]] == [
        "16",
        "8",
    ]
