"""The Python API and plain arrays: what a user with an (n, D) matrix and nothing else gets.

* a label-free fit (no queries, no judgments) saves and loads, and the loaded object,
  ``launch.compress`` on the saved folder and the ONNX export give the same vectors;
* ``auto``'s validation table is what a brute-force recomputation gives, and it keeps the
  best row; with judgments its nDCG@10 table equals pytrec_eval's on the held-out queries;
* ``launch.train`` takes a bare ``.npy`` (no BEIR folder, no judgments);
* bad arrays, ids and judgments are one line naming the file or argument and the row or id,
  and nothing is written.
"""

import subprocess
import sys

import numpy as np
import pytest

import smec_jax
from smec_jax import api, cli
from smec_jax.datasets import arrays
from smec_jax.datasets.data import DataError
from smec_jax.methods import auto
from tests.helpers import tiny_config

# configs/tiny.py's training fields: every candidate trains in seconds
TINY = {
    f"{section}.{k}": v
    for section in ("train", "memory")
    for k, v in tiny_config()[section].items()
    if (section, k) != ("memory", "sharded")
}


def low_rank(n=600, d=32, rank=8, seed=0, scale=10.0):
    """Documents of rank ``rank`` plus noise, far from unit norm (rows are normalised by
    the API, not by the user)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + 0.1 * rng.normal(size=(n, d))
    return (scale * x).astype(np.float32)


@pytest.fixture(scope="module")
def label_free(tmp_path_factory):
    """A label-free ``auto`` fit of a low-rank matrix, saved to a folder; its checkpoints
    in ``workdir`` (a budgeted fit resumes them instead of training again)."""
    docs = low_rank()
    base = tmp_path_factory.mktemp("api")
    comp = smec_jax.fit(docs, sizes=(16, 8), overrides=TINY, workdir=base / "w", verbose=False)
    folder = comp.save(base / "comp")
    return docs, comp, folder


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_top(q, c, k):
    """Top-k rows by cosine, ties to the lower row (what retrieval.search does)."""
    s = unit(q) @ unit(c).T
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def test_auto_without_labels_keeps_the_best_row_of_a_table_brute_force_agrees_with(label_free):
    docs, comp, _ = label_free
    table = comp.info["auto"]["table"]
    assert list(table) == ["distill_docs", "pca", "truncate"]
    means = {n: r["mean"] for n, r in table.items()}
    assert comp.method == max(means, key=means.get)
    # PCA's row, recomputed: PCA of the documents auto fitted on, top-10 of the held-out
    # documents against them, at full size and compressed
    keep, val = auto._split_rows(len(docs), 0.1, 0)
    corpus, queries = unit(docs[keep]), unit(docs[val])
    mean = corpus.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov((corpus - mean).T, bias=True))
    axes = evecs[:, np.argsort(-evals)]
    full = brute_top(queries, corpus, 10)
    for d in (16, 8):
        w = axes[:, :d]
        top = brute_top((queries - mean) @ w, (corpus - mean) @ w, 10)
        agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(full, top, strict=True)])
        assert table["pca"]["sizes"][str(d)] == pytest.approx(agree, abs=1e-9)
    # truncation at 8 of 32 dims loses much of a rank-8 geometry; the chosen map does not
    assert table[comp.method]["sizes"]["8"] > table["truncate"]["sizes"]["8"] + 0.2


def test_a_byte_budget_scores_every_code_within_it_and_the_api_serves_the_choice(label_free):
    """``budget_bytes``: each candidate's row holds every (size, precision) code of at most
    that many bytes, its PCA int4 cell is what a from-scratch quantizer gives, the choice is
    the best cell of all, and the API's query and decoded-document vectors of the chosen code
    rank as the validation scored them."""
    docs, _, folder = label_free
    workdir = folder.parent / "w"  # the fixture's checkpoints: the candidates resume
    comp = smec_jax.fit(
        docs, sizes=(16, 8), overrides=TINY, workdir=workdir, budget_bytes=8, verbose=False
    )
    table = comp.info["auto"]["table"]
    want = {
        f"{d}-d {p}"
        for d in (16, 8)
        for p in auto.BUDGET_PRECISIONS
        if -(-d * {"float16": 16, "int8": 8, "int4": 4, "int2": 2, "binary_itq": 1}[p] // 8) <= 8
    }
    assert want == {"16-d int4", "16-d int2", "16-d binary_itq", "8-d int8", "8-d int4",
                    "8-d int2", "8-d binary_itq"}  # fmt: skip
    for row in table.values():
        assert set(row["points"]) == want
        assert row["score"] == max(row["points"].values())
    best = max(table, key=lambda n: table[n]["score"])
    point = comp.recommended
    assert comp.method == best and f"{point['size']}-d {point['precision']}" == table[best]["best"]
    assert point["bytes"] <= 8 == point["bytes_budget"]
    # PCA at 16-d int4, from scratch: 16 equal-mass levels per dim, each decoded as its
    # bin's mean; float queries against the decoded documents, top-10 against full size
    keep, val = auto._split_rows(len(docs), 0.1, 0)
    corpus, queries = unit(docs[keep]), unit(docs[val])
    mean = corpus.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov((corpus - mean).T, bias=True))
    w = evecs[:, np.argsort(-evals)][:, :16]
    y, q = unit((corpus - mean) @ w), unit((queries - mean) @ w)
    decoded = np.empty_like(y)
    for j in range(16):
        edges = np.quantile(y[:, j], np.arange(1, 16) / 16)
        level = (y[:, j, None] > edges[None, :]).sum(axis=1)
        for lv in np.unique(level):
            decoded[level == lv, j] = y[level == lv, j].mean()
    full = brute_top(queries, corpus, 10)
    top = np.argsort(-(q @ decoded.T), axis=1, kind="stable")[:, :10]
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(full, top, strict=True)])
    assert table["pca"]["points"]["16-d int4"] == pytest.approx(agree, abs=1e-6)
    # the API at each code of the chosen map (binary_itq's rotated queries included),
    # calibrated on the fitted documents as validation was: the validation's agreement
    for label, score in table[best]["points"].items():
        size, precision = int(label.split("-d ")[0]), label.split("-d ")[1]
        d = comp.encode_documents(docs[keep], size, precision)
        s = (
            comp.encode_queries(docs[val], size, precision)
            @ comp.decode_documents(d, size, precision).T
        )
        top = np.argsort(-s, axis=1, kind="stable")[:, :10]
        agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(full, top, strict=True)])
        assert score == pytest.approx(agree, abs=0.01), label  # a near-tie may flip a row
        if precision == "binary_itq":
            # a document's own sign code is the +-1 vector its vector, rotated into the
            # codes' space, scores highest (an unrotated query would not)
            from smec_jax.core import codes

            y = codes.query_vectors(comp.encode_documents(docs[keep], size), comp.calibration(size, precision))  # fmt: skip
            s = y @ comp.decode_documents(d, size, precision).T
            assert (np.diag(s) >= s.max(axis=1) - 1e-4).all()
    with pytest.raises(DataError, match=r"budget_bytes=1: no code of sizes \[16\] fits .* 2 B"):
        smec_jax.fit(docs, sizes=(16,), overrides=TINY, budget_bytes=1, verbose=False)
    with pytest.raises(ValueError, match="budget_bytes chooses among auto's candidates"):
        smec_jax.fit(docs, sizes=(8,), method="pca", budget_bytes=8)


def test_saved_loaded_compressed_and_onnx_vectors_are_the_same(label_free, tmp_path):
    docs, comp, folder = label_free
    loaded = smec_jax.load(folder)
    assert loaded.method == comp.method and loaded.sizes == (16, 8)
    for size in (16, 8):
        np.testing.assert_array_equal(
            loaded.encode_documents(docs, size), comp.encode_documents(docs, size)
        )
        np.testing.assert_array_equal(
            loaded.encode_queries(docs, size), comp.encode_queries(docs, size)
        )
    int8 = comp.encode_documents(docs, 8, "int8")
    # the calibration fitted by the first call is saved and reused by the loaded object
    comp.save(folder)
    np.testing.assert_array_equal(
        smec_jax.load(folder).encode_documents(docs[:5], 8, "int8"), int8[:5]
    )
    # launch.compress on the saved folder: the same float vectors and the same int8 codes
    from smec_jax.serving import codes_folder, compress

    np.save(tmp_path / "docs.npy", docs)
    for precision, want in (("float32", comp.encode_documents(docs, 8)), ("int8", int8)):
        out = compress.compress_embeddings(
            folder, tmp_path / "docs.npy", tmp_path / precision, size=8, precision=precision,
            verbose=False,
        )  # fmt: skip
        got, ids, _ = codes_folder.load_codes(out)
        np.testing.assert_array_equal(np.asarray(got), want)
        assert ids == [str(i) for i in range(len(docs))]
    # the ONNX export of the saved folder
    import onnxruntime as ort

    from smec_jax.serving import interop

    onnx_path = interop.to_onnx(folder, tmp_path / "c.onnx")
    sess = ort.InferenceSession(str(onnx_path))
    names = [o.name for o in sess.get_outputs()]
    out = dict(
        zip(
            names,
            sess.run(None, {"embedding": unit(docs), "size": np.asarray(8, np.int64)}),
            strict=True,
        )
    )
    np.testing.assert_allclose(out["codes"], comp.encode_documents(docs, 8), atol=2e-6)
    if comp.asymmetric:
        np.testing.assert_allclose(out["query_codes"], comp.encode_queries(docs, 8), atol=2e-6)


def test_to_faiss_holds_the_same_codes_and_the_given_ids(label_free):
    docs, comp, _ = label_free
    ids = np.arange(len(docs)) * 7 + 3
    q = comp.encode_queries(docs[:20], 8)
    for precision in ("float32", "int8"):
        index = comp.to_faiss(docs, 8, precision, ids=ids)
        assert index.ntotal == len(docs)
        scores, got = index.search(q, 5)
        # brute force over the decoded codes: the same top 5 (ids mapped), the same scores
        from smec_jax.core import codes

        c = comp.encode_documents(docs, 8, precision)
        if precision == "int8":
            c = codes.decode(c, comp.calibration(8, "int8"))
        s = q @ np.asarray(c, np.float32).T
        want = np.argsort(-s, axis=1, kind="stable")[:, :5]
        np.testing.assert_allclose(scores, np.take_along_axis(s, want, 1), rtol=1e-5, atol=1e-5)
        assert (got == ids[want]).mean() > 0.99  # exact ties may order differently


def test_auto_with_judgments_scores_candidates_as_pytrec_eval_does(synthetic, tmp_path):
    import pytrec_eval

    from smec_jax.training.splits import split_train_val

    qrels = synthetic.qrels["train"]
    comp = smec_jax.fit(
        synthetic.corpus, synthetic.queries, qrels, sizes=(16, 8),
        doc_ids=synthetic.corpus_ids, query_ids=synthetic.query_ids, overrides=TINY,
        workdir=tmp_path / "w", verbose=False,
    )  # fmt: skip
    record = comp.info["auto"]
    table = record["table"]
    assert record["situation"] == auto.JUDGED
    assert list(table) == ["smec_distill", "smec", "distill_docs", "pca", "truncate"]
    scored = {n: r["mean"] for n, r in table.items() if "mean" in r}
    assert comp.method == max(scored, key=scored.get)
    # truncation's row by pytrec_eval on the held-out training queries
    cfg = tiny_config()
    vs = split_train_val(synthetic, "train", cfg.train.val_fraction, 0, cfg.train.val_split)
    assert record["validation"].startswith(f"{len(vs.val)} held-out training queries")
    rows = synthetic.query_rows(vs.val)
    for d in (16, 8):
        s = unit(synthetic.queries[rows][:, :d]) @ unit(synthetic.corpus[:, :d]).T
        run = {
            q: {synthetic.corpus_ids[j]: float(s[i, j]) for j in np.argsort(-s[i])[:100]}
            for i, q in enumerate(vs.val)
        }
        ev = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in vs.val}, {"ndcg_cut.10"})
        want = np.mean([v["ndcg_cut_10"] for v in ev.evaluate(run).values()])
        assert table["truncate"]["sizes"][str(d)] == pytest.approx(want, abs=1e-5)

    # a byte budget (the candidates resume from the checkpoints above), then the test
    # queries: each candidate at its validation-best code, the choice against the best
    # free code with the paired interval
    from smec_jax.core import codes
    from smec_jax.evaluation import stats
    from smec_jax.evaluation.evaluator import Evaluator

    test = synthetic.qrels["test"]
    data = arrays.from_arrays(
        synthetic.corpus, synthetic.queries, qrels, doc_ids=synthetic.corpus_ids,
        query_ids=synthetic.query_ids, test_qrels=test,
    )  # fmt: skip
    cfg = api.fit_config(data, (16, 8), overrides=TINY, budget_bytes=8)
    choice = auto.choose(cfg, data, tmp_path / "w", verbose=False)
    evaluator = Evaluator.from_config(data, cfg.eval, split="test")
    b = auto.budget_on_test(choice, evaluator)
    assert b["chosen"] == choice.name and b["budget_bytes"] == 8
    for name, row in b["candidates"].items():
        assert row["point"] == choice.table[name]["best"]
    # truncation's test score at its code, by pytrec_eval over the decoded documents
    size, precision = b["candidates"]["truncate"]["point"].split("-d ")
    size = int(size)
    cal = codes.calibrate(unit(synthetic.corpus[:, :size]), precision)
    docs = codes.decode(codes.encode(unit(synthetic.corpus[:, :size]), cal), cal)
    qs = codes.query_vectors(unit(synthetic.queries[:, :size]), cal)
    rows = synthetic.query_rows(evaluator.qids)
    s = qs[rows] @ docs.T
    run = {
        q: {synthetic.corpus_ids[j]: float(s[i, j]) for j in np.argsort(-s[i])[:100]}
        for i, q in enumerate(evaluator.qids)
    }
    ev = pytrec_eval.RelevanceEvaluator(test, {"ndcg_cut.10"})
    want = np.mean([v["ndcg_cut_10"] for v in ev.evaluate(run).values()])
    assert b["candidates"]["truncate"]["all"] == pytest.approx(want, abs=1e-5)
    if choice.name not in auto.FREE:
        free = max(auto.FREE, key=lambda n: choice.table[n]["score"])
        assert b["versus"]["method"] == free
        per = {
            n: evaluator.per_query(choice.fits[n].compressor, int(p.split("-d ")[0]), None,
                                   p.split("-d ")[1], "asymmetric")["ndcg@10"]
            for n, p in ((n, b["candidates"][n]["point"]) for n in (choice.name, free))
        }  # fmt: skip
        want = stats.paired_bootstrap(per[choice.name], per[free])
        assert b["versus"]["all"] == want
    else:
        assert "versus" not in b


def test_launch_train_takes_a_bare_npy_without_judgments(tmp_path):
    np.save(tmp_path / "docs.npy", low_rank(n=400))
    workdir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "launch.train", "--config", "configs/tiny.py",
        "--config.data.source=arrays", f"--config.data.corpus={tmp_path / 'docs.npy'}",
        f"--workdir={workdir}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no training judgments, so only label-free methods are offered" in out.stdout
    assert "auto chose" in out.stdout
    loaded = smec_jax.load(workdir / "compressor.npz")
    assert loaded.sizes == (32, 16, 8)
    assert (workdir / "auto.json").is_file() and (workdir / "agreement.json").is_file()


# (what to pass to from_arrays, words the one line must hold)
def _bad_cases(tmp_path):
    docs = low_rank(n=50)
    nan, zero, inf = docs.copy(), docs.copy(), docs.copy()
    nan[17, 3], zero[4] = np.nan, 0.0
    inf[9, 0] = np.inf
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "ints.npy", np.ones((4, 3), np.int64))
    (tmp_path / "ids.txt").write_text("a\nb\na\n")
    q = low_rank(n=5, seed=1)
    ids = [f"d{i}" for i in range(50)]
    return [
        (dict(docs=tmp_path / "nan.npy"), ["nan.npy: row 17 is NaN/Inf"]),
        (dict(docs=inf), ["docs: row 9 is NaN/Inf"]),
        (dict(docs=zero), ["docs: row 4 is a zero vector"]),
        (dict(docs=docs[0]), ["docs: expected an (n, D) matrix", "(32,)"]),
        (dict(docs=tmp_path / "ints.npy"), ["ints.npy: expected float16/float32/float64"]),
        (dict(docs=tmp_path / "pickled.npy"), ["pickled.npy: not a plain numeric .npy"]),
        (dict(docs=tmp_path / "missing.npy"), ["missing.npy: file not found"]),
        (dict(docs=docs, queries=q[:, :16]), ["queries: 16-d rows but the documents are 32-d"]),
        (dict(docs=docs, doc_ids=ids[:49]), ["doc_ids: 49 ids but docs has 50 rows"]),
        (dict(docs=docs, doc_ids=ids[:49] + ["d3"]), ["doc_ids: duplicate id 'd3' at rows 3 and 49"]),
        (dict(docs=docs[:3], doc_ids=tmp_path / "ids.txt"), ["ids.txt:3: duplicate id 'a'"]),
        (dict(docs=docs, qrels={"0": {"1": 1}}), ["judgments or query ids were given without queries"]),
        (dict(docs=docs, queries=q, qrels={"7": {"1": 1}}), ["qrels: query id '7' is not among the 5"]),
        (dict(docs=docs, queries=q, qrels={"0": {"x": 1}}), ["qrels: query '0' judges document 'x'"]),
        (dict(docs=docs, queries=q, qrels={"0": {"1": 0}}), ["qrels: no positive judgment"]),
    ]  # fmt: skip


def test_bad_arrays_ids_and_judgments_are_one_line_naming_where(tmp_path):
    for kwargs, words in _bad_cases(tmp_path):
        docs = kwargs.pop("docs")
        with pytest.raises(DataError) as err:
            arrays.from_arrays(docs, **kwargs)
        msg = str(err.value)
        assert "\n" not in msg, msg
        for w in words:
            assert w in msg, (w, msg)


def test_the_api_refuses_without_writing(label_free, tmp_path, capsys):
    docs, comp, _ = label_free
    # a supervised method without judgments: one line, nothing written
    workdir = tmp_path / "w"
    with pytest.raises(SystemExit) as err:
        cli.guarded(
            lambda: smec_jax.fit(docs, sizes=(8,), method="smec", workdir=workdir, verbose=False)
        )
    line = capsys.readouterr().err.strip()
    assert err.value.code == 2 and "\n" not in line
    assert "no 'train' judgments, so only label-free methods train; smec needs them" in line
    assert not workdir.exists()
    with pytest.raises(ValueError, match="sizes .*give distinct sizes from 1 to"):
        smec_jax.fit(docs, sizes=(64,))
    with pytest.raises(ValueError, match="size 12: this compressor was trained for sizes"):
        comp.encode_documents(docs, 12)
    with pytest.raises(DataError, match="docs: 16-d rows but the documents are 32-d"):
        comp.encode_documents(docs[:, :16], 8)
    # save() never replaces a folder that is not a saved compressor
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not a saved compressor"):
        comp.save(other)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    with pytest.raises(ValueError, match="no compressor.npz here"):
        api.load(other)


def test_a_query_log_without_judgments_is_what_distillation_reads():
    from smec_jax.training import batches

    docs, q = low_rank(n=100), low_rank(n=30, seed=2)
    data = arrays.from_arrays(docs, q)
    got, source = batches.unlabelled_queries(data, None, "train", "train")
    np.testing.assert_array_equal(got, data.queries)
    assert source == "30 logged queries (judged in no split)"
    assert auto.situation(data) == auto.LOG
    assert auto.candidates(data)[0] == "distill_pseudo_log"


def test_test_queries_are_never_part_of_the_log():
    """With test judgments beside a log, the log is the queries no split judges: auto's
    situation counts them alone and distillation reads them alone."""
    from smec_jax.training import batches

    docs, q = low_rank(n=100), low_rank(n=45, seed=2)
    test = {str(i): {str(i): 1} for i in range(25)}  # queries 0..24 judged for scoring
    data = arrays.from_arrays(docs, q, test_qrels=test)
    got, _ = batches.unlabelled_queries(data, None, "train", "train")
    np.testing.assert_array_equal(got, data.queries[25:])
    assert auto.situation(data) == auto.LOG  # 20 logged queries
    fewer = arrays.from_arrays(docs, q[:44], test_qrels=test)
    assert auto.situation(fewer) == auto.DOCS  # 19: too few to hold a fifth out
