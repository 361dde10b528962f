"""Every bad input fails with one line naming the file, the row or id and the fix, and the
evaluate command leaves no output behind when it does."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from configs import default as default_config
from smec_jax.datasets import data, sources


def write_folder(root: Path, n_docs=6, n_q=4, dim=8, *, mutate=None):
    """A tiny valid BEIR folder with embeddings; ``mutate(parts)`` edits it before writing."""
    rng = np.random.default_rng(0)
    corpus_rows = [{"_id": f"d{i}", "title": f"T{i}", "text": f"doc {i}"} for i in range(n_docs)]
    query_rows = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(n_q)]
    parts = {
        "corpus_rows": corpus_rows,
        "query_rows": query_rows,
        "fingerprint": {
            "corpus": data.text_fingerprint(corpus_rows, data.doc_text),
            "queries": data.text_fingerprint(query_rows, data.query_text),
        },
        "corpus_jsonl": None,  # bytes to write instead of the rows (malformed files)
        "queries_jsonl": None,
        "corpus_ids": [f"d{i}" for i in range(n_docs)],
        "query_ids": [f"q{i}" for i in range(n_q)],
        "corpus": rng.normal(size=(n_docs, dim)).astype(np.float16),
        "queries": rng.normal(size=(n_q, dim)).astype(np.float32),
        "train": "query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t2\n",
        "test": "query-id\tcorpus-id\tscore\nq2\td2\t1\nq3\td3\t1\nq3\td4\t2\n",
    }
    if mutate:
        mutate(parts)
    ds = root / "toy"
    emb = ds / "embeddings" / "enc"
    emb.mkdir(parents=True)
    (ds / "qrels").mkdir()
    for split in ("train", "test"):
        if parts[split] is not None:
            (ds / "qrels" / f"{split}.tsv").write_text(parts[split])
    np.save(emb / "corpus.npy", parts["corpus"])
    np.save(emb / "queries.npy", parts["queries"])
    (emb / "corpus_ids.txt").write_text("\n".join(parts["corpus_ids"]) + "\n")
    (emb / "query_ids.txt").write_text("\n".join(parts["query_ids"]) + "\n")
    (emb / "meta.json").write_text(
        json.dumps({"model": "enc", "fingerprint": parts["fingerprint"]})
    )
    for kind in ("corpus", "queries"):
        raw = parts[f"{kind}_jsonl"]
        if raw is None:
            rows = parts["corpus_rows" if kind == "corpus" else "query_rows"]
            raw = "".join(json.dumps(r) + "\n" for r in rows).encode()
        (ds / f"{kind}.jsonl").write_bytes(raw)
    return ds


def test_valid_folder_loads(tmp_path):
    d = data.load_embedded(write_folder(tmp_path), "enc")
    assert d.corpus.dtype == np.float32 and d.corpus.shape == (6, 8)
    np.testing.assert_allclose(np.linalg.norm(d.queries, axis=1), 1.0, rtol=1e-6)
    assert d.qrels["test"]["q3"] == {"d3": 1, "d4": 2}
    assert d.judged_queries("test") == ["q2", "q3"]
    assert d.unseen_queries("test") == ["q2", "q3"]


def _nan_row(p):
    p["corpus"][3, 2] = np.nan


def _inf_row(p):
    p["queries"][1, 0] = np.inf


def _zero_row(p):
    p["corpus"][2] = 0


def _dim_mismatch(p):
    p["queries"] = p["queries"][:, :5]


def _count_mismatch(p):
    p["corpus_ids"] = p["corpus_ids"][:-1]


def _dup_ids(p):
    p["query_ids"][2] = "q0"


def _bad_tsv_fields(p):
    p["train"] += "q2 d2 1\n"


def _bad_tsv_grade(p):
    p["test"] += "q2\td5\tvery\n"


def _empty_split(p):
    p["test"] = "query-id\tcorpus-id\tscore\n"


def _no_split(p):
    p["train"] = None
    p["test"] = None


def _stale_ids(p):  # the corpus lost a document after it was embedded
    del p["corpus_rows"][4]


def _reordered_queries(p):
    p["query_rows"].reverse()


def _edited_text(p):  # same ids, a text changed after embedding
    p["corpus_rows"][1]["text"] = "edited"


def _malformed_jsonl(p):
    p["corpus_jsonl"] = b'{"_id": "d0", "text": "a"}\n{"_id": "d1", "text": \n'


def _dup_jsonl(p):
    p["queries_jsonl"] = b'{"_id": "q0", "text": "a"}\n{"_id": "q0", "text": "b"}\n'


def _bad_utf8_jsonl(p):
    p["corpus_jsonl"] = b'{"_id": "d0", "text": "caf\xe9"}\n'


BAD = {
    "stale_ids": (_stale_ids, r"corpus_ids\.txt: row 5 is 'd4' but .*corpus\.jsonl has 'd5'"),
    "reordered": (
        _reordered_queries,
        r"query_ids\.txt: row 1 is 'q0' but .*queries\.jsonl has 'q3'",
    ),
    "edited_text": (_edited_text, r"meta\.json: the corpus texts in .*corpus\.jsonl changed"),
    "jsonl_json": (_malformed_jsonl, r"corpus\.jsonl:2: malformed JSON"),
    "jsonl_dup": (_dup_jsonl, r"queries\.jsonl:2: duplicate id 'q0'"),
    "jsonl_utf8": (_bad_utf8_jsonl, r"corpus\.jsonl:1: not valid UTF-8"),
    "nan": (_nan_row, r"corpus\.npy: row 3 \(id 'd3'\) contains NaN/Inf"),
    "inf": (_inf_row, r"queries\.npy: row 1 \(id 'q1'\) contains NaN/Inf"),
    "zero": (_zero_row, r"corpus\.npy: row 2 \(id 'd2'\) is a zero vector"),
    "dim": (_dim_mismatch, r"queries are 5-d but the corpus is 8-d"),
    "count": (_count_mismatch, r"corpus\.npy: 6 rows but 5 ids"),
    "dup": (_dup_ids, r"query_ids\.txt:3: duplicate id 'q0' \(first on line 1\)"),
    "tsv_fields": (_bad_tsv_fields, r"train\.tsv:4: expected 3 tab-separated fields"),
    "tsv_grade": (_bad_tsv_grade, r"test\.tsv:5: score 'very' is not an integer"),
    "empty_split": (_empty_split, r"test\.tsv: split is empty"),
    "no_split": (_no_split, r"qrels: no qrels/<split>\.tsv files"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_embedding_inputs_name_file_and_row(tmp_path, case):
    mutate, pattern = BAD[case]
    ds = write_folder(tmp_path, mutate=mutate)
    with pytest.raises(data.DataError, match=pattern) as err:
        data.load_embedded(ds, "enc")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["nan", "count", "tsv_grade", "stale_ids", "edited_text"])
def test_evaluate_leaves_nothing_behind_on_bad_input(tmp_path, case):
    from smec_jax import jobs

    ds = write_folder(tmp_path / "data", mutate=BAD[case][0])
    cfg = default_config.get_config()
    cfg.data.root, cfg.data.dataset, cfg.data.encoder = str(ds.parent), ds.name, "enc"
    cfg.ladder = (8, 4)
    workdir = tmp_path / "work"
    with pytest.raises(data.DataError):
        jobs.evaluate(cfg, str(workdir))
    assert not workdir.exists() or not any(workdir.iterdir())


def test_unknown_qrel_ids_are_skipped_with_a_count(tmp_path, caplog):
    def unknown(p):
        p["test"] += "q2\tnope\t1\nq9\td1\t1\n"

    with caplog.at_level(logging.WARNING):
        d = data.load_embedded(write_folder(tmp_path, mutate=unknown), "enc")
    assert "skipped 2 judgments naming unknown query or doc ids" in caplog.text
    assert "nope" not in d.qrels["test"]["q2"] and "q9" not in d.qrels["test"]


def test_pickled_arrays_are_refused(tmp_path):
    def objects(p):
        p["corpus"] = np.array([{"a": 1}] * 6, dtype=object)

    with pytest.raises(data.DataError, match=r"corpus\.npy: not a plain numeric \.npy array"):
        data.load_embedded(write_folder(tmp_path, mutate=objects), "enc")


def test_malformed_jsonl_and_non_utf8(tmp_path):
    p = tmp_path / "corpus.jsonl"
    p.write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n')
    with pytest.raises(data.DataError, match=r"corpus\.jsonl:2: malformed JSON"):
        data.read_jsonl(p)
    p.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(data.DataError, match=r"corpus\.jsonl:2: not valid UTF-8"):
        data.read_jsonl(p)
    p.write_text('{"_id": "a"}\n{"_id": "a"}\n')
    with pytest.raises(data.DataError, match=r"corpus\.jsonl:2: duplicate id 'a'"):
        data.read_jsonl(p)
    p.write_text('["no id"]\n')
    with pytest.raises(
        data.DataError, match=r'corpus\.jsonl:1: expected a JSON object with an "_id"'
    ):
        data.read_jsonl(p)


def test_missing_data_folder_says_where_to_get_it(tmp_path):
    cfg = default_config.get_config()
    cfg.data.root = str(tmp_path / "absent")
    with pytest.raises(
        data.DataError, match=r"not found; get BEIR SciFact from .*configs/synthetic\.py"
    ):
        sources.load(cfg.data)


def test_real_scifact_drops_nothing_and_counts_unseen(scifact_minilm):
    d = scifact_minilm
    assert d.corpus.shape == (5183, 384) and d.queries.shape == (1109, 384)
    assert len(d.judged_queries("test")) == 300 and len(d.judged_queries("train")) == 809
    assert len(d.unseen_queries("test")) == 104
