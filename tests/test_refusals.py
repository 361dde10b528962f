"""Bad input to the serving commands and the array source, as a user meets it: each case
runs a command's library function under ``cli.guarded`` (what ``python -m launch.X`` does)
and must end with exit status 2, one line naming the file, size or id (the words listed),
and its output path as it was (no folder, no ``.partial`` left behind).

The other commands' refusals are tested beside them: config fields (test_cli), BEIR and
embedding folders (test_data), the Python API's arrays (test_api), the trainer's resume
(test_train), compress/index/evaluate --index basics and the export encoder
(test_serving), launch.agreement's query ids (test_fidelity).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from smec_jax import cli, jobs
from smec_jax.core import export
from smec_jax.core.export import NestedCompressor
from smec_jax.evaluation import fidelity
from smec_jax.serving import compress
from tests.helpers import tiny_config, write_beir


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A BEIR folder (50 docs, 6 queries, 32-d), two compressors, codes of each, and the
    bad files the cases read."""
    tmp = tmp_path_factory.mktemp("refusals")
    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(50, 32)), rng.normal(size=(6, 32))
    ids, qids = [f"d{i}" for i in range(50)], [f"q{i}" for i in range(6)]
    ds = write_beir(tmp, "toy", ids, docs, qids, queries, {"test": {q: {"d1": 1} for q in qids}})
    emb = ds / "embeddings" / "enc"
    one = export.save(export.original(32), tmp / "one.npz", "enc")
    eye = {"w": np.eye(32, dtype=np.float32), "b": np.full(32, 0.01, np.float32)}
    two = export.save(NestedCompressor(eye, np.arange(32), (32, 16)), tmp / "two.npz", "enc")
    c32 = compress.compress_embeddings(
        one, emb, tmp / "c32", size=32, precision="float32", verbose=False
    )
    c16 = compress.compress_embeddings(
        two, emb, tmp / "c16", size=16, precision="int8", verbose=False
    )
    bad = docs[:5].astype(np.float32).copy()
    bad[3, 7] = np.nan
    np.save(tmp / "nan.npy", bad)
    np.save(tmp / "x5.npy", docs[:5].astype(np.float32))
    np.save(tmp / "flat.npy", np.ones(5, np.float32))
    np.save(tmp / "wide.npy", rng.normal(size=(5, 48)).astype(np.float32))
    (tmp / "short.txt").write_text("a\nb\n")
    (tmp / "dup.txt").write_text("a\nb\na\nc\nd\n")
    np.save(tmp / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp / "afile").write_text("not a folder")
    man = json.loads((c32 / "manifest.json").read_text())
    shutil.copytree(c32, tmp / "badmanifest")
    (tmp / "badmanifest" / "manifest.json").write_text(json.dumps(man | {"rows": 49}))
    # an index whose ids name a document the corpus lacks; query codes missing a query
    shutil.copytree(c32, tmp / "c32-other-ids")
    (tmp / "c32-other-ids" / "ids.txt").write_text("".join(f"x{i}\n" for i in range(50)))
    idx = jobs.build_index(str(c32), "flat", str(tmp / "idx"))
    foreign = jobs.build_index(str(tmp / "c32-other-ids"), "flat", str(tmp / "idx-foreign"))
    q32 = compress.compress_embeddings(
        one, emb, tmp / "q32", part="queries", like=c32, verbose=False
    )
    np.save(tmp / "q5.npy", queries[:5].astype(np.float32))
    (tmp / "q5.txt").write_text("".join(f"q{i}\n" for i in range(5)))
    q_missing = compress.compress_embeddings(
        one, tmp / "q5.npy", tmp / "q-missing", part="queries", like=c32, ids_file=str(tmp / "q5.txt"),
        verbose=False,
    )  # fmt: skip
    cfg = tiny_config()
    cfg.data.update(source="beir", root=str(tmp), dataset="toy", encoder="enc")
    cfg.ladder = (32,)
    return {
        "tmp": tmp, "emb": emb, "one": one, "two": two, "c32": c32, "c16": c16, "idx": idx,
        "foreign": foreign, "q32": q32, "q_missing": q_missing, "cfg": cfg, "ds": ds,
    }  # fmt: skip


def compress_case(f, *, src=None, out="x", **kw):
    kw = {"size": 32, "precision": "int8", **kw}
    return lambda: jobs.compress(
        str(kw.pop("compressor", f["one"])), str(src or f["emb"]), str(f["tmp"] / out), **kw
    )


def arrays_cfg(f, **fields):
    cfg = tiny_config()
    cfg.data.source = "arrays"
    cfg.data.update(**{k: str(v) for k, v in fields.items()})
    return cfg


def with_method(cfg, name):
    cfg.method = name
    return cfg


# (id, builds the call from the files, the output path it must leave unchanged, words)
CASES = [
    ("compress-nan-row", lambda f: compress_case(f, src=f["tmp"] / "nan.npy", precision="float32"),
     "x", ["nan.npy: row 3 is NaN/Inf or a zero vector"]),
    ("compress-1d-array", lambda f: compress_case(f, src=f["tmp"] / "flat.npy"),
     "x", ["flat.npy: expected an (n, D) array, got shape (5,)"]),
    ("compress-short-ids", lambda f: compress_case(f, src=f["tmp"] / "x5.npy", ids_file=str(f["tmp"] / "short.txt")),
     "x", ["short.txt: 2 ids but", "x5.npy has 5 rows"]),
    ("compress-duplicate-ids", lambda f: compress_case(f, src=f["tmp"] / "x5.npy", ids_file=str(f["tmp"] / "dup.txt")),
     "x", ["dup.txt:3: duplicate id 'a' (first on line 1)"]),
    ("compress-pickled-compressor", lambda f: compress_case(f, compressor=f["tmp"] / "pickled.npy"),
     "x", ["pickled.npy: not a compressor .npz", "write it again"]),
    ("compress-like-another-compressor", lambda f: compress_case(f, part="queries", like=str(f["c16"]), size=None, precision=None),
     "x", ["c16 was made with another compressor than", "one.npz"]),
    ("compress-like-another-size", lambda f: compress_case(f, compressor=f["two"], like=str(f["c16"]), size=32, precision=None),
     "x", ["--size 32 but", "c16 holds size 16; drop --size"]),
    ("compress-unknown-part", lambda f: compress_case(f, part="docs"),
     "x", ["unknown part 'docs'; use corpus or queries"]),
    ("compress-out-inside-a-file", lambda f: compress_case(f, out="afile/x"),
     "afile", ["--out", "afile is a file, not a folder"]),
    ("compress-wide-input-of-another-encoder", lambda f: compress_case(f, src=f["tmp"] / "wide.npy"),
     "x", ["one.npz takes 32-d embeddings but", "wide.npy is 48-d"]),
    ("index-manifest-disagrees", lambda f: lambda: jobs.build_index(str(f["tmp"] / "badmanifest"), "flat", str(f["tmp"] / "x")),
     "x", ["badmanifest: 50 code rows and 50 ids but the manifest says 49"]),
    ("index-unknown-kind", lambda f: lambda: jobs.build_index(str(f["c32"]), "ivf", str(f["tmp"] / "x")),
     "x", ["unknown index kind 'ivf'; use one of flat"]),
    ("evaluate-index-unknown-doc-id", lambda f: lambda: jobs.evaluate_index(f["cfg"], str(f["foreign"]), str(f["q32"]), str(f["tmp"] / "x")),
     "x", ["idx-foreign: document id 'x0' is not in toy's corpus"]),
    ("evaluate-index-missing-query", lambda f: lambda: jobs.evaluate_index(f["cfg"], str(f["idx"]), str(f["q_missing"]), str(f["tmp"] / "x")),
     "x", ["q-missing: no codes for query 'q5' of toy"]),
    ("export-unknown-format", lambda f: lambda: jobs.export(f["cfg"], str(f["tmp"]), str(f["tmp"] / "x"), fmt="zip"),
     "x", ["unknown --format 'zip'; use npz, sentence_transformers or onnx"]),
    ("export-sentence-transformers-without-encoder", lambda f: lambda: jobs.export(f["cfg"], str(f["tmp"]), str(f["tmp"] / "x"), fmt="sentence_transformers"),
     "x", ["--format sentence_transformers needs --encoder"]),
    ("agreement-compressor-of-another-dimension", lambda f: lambda: fidelity.run(f["emb"], f["tmp"] / "wide.npz"),
     "x", ["wide.npz: takes 48-d inputs", "toy/embeddings/enc holds 32-d embeddings"]),
    ("agreement-not-an-embedding-folder", lambda f: lambda: fidelity.run(f["tmp"], f["one"]),
     "x", ["not an embedding folder with corpus and queries", "launch.embed"]),
    ("agreement-k-out-of-range", lambda f: lambda: fidelity.run(f["emb"], f["one"], k=0),
     "x", ["--k 0: choose 1 to 50 (the corpus size)"]),
    ("embed-not-a-beir-folder", lambda f: lambda: jobs.embed(str(f["tmp"] / "nope"), "all-MiniLM-L6-v2"),
     "nope", ["nope: no corpus.jsonl here; give a BEIR folder"]),
    ("embed-model-not-on-disk", lambda f: lambda: jobs.embed(str(f["ds"]), str(f["tmp"] / "no-model"), out=str(f["tmp"] / "x")),
     "x", ["cannot load sentence-transformers model", "no-model", "pass a local model folder"]),
    ("train-arrays-nan-row", lambda f: lambda: jobs.train_and_evaluate(arrays_cfg(f, corpus=f["tmp"] / "nan.npy"), str(f["tmp"] / "x")),
     "x", ["nan.npy: row 3 is NaN/Inf"]),
    ("train-arrays-queries-of-another-dimension", lambda f: lambda: jobs.train_and_evaluate(arrays_cfg(f, corpus=f["tmp"] / "x5.npy", queries=f["tmp"] / "wide.npy"), str(f["tmp"] / "x")),
     "x", ["wide.npy: 48-d rows but the documents are 32-d"]),
    ("train-arrays-without-a-corpus", lambda f: lambda: jobs.train_and_evaluate(arrays_cfg(f), str(f["tmp"] / "x")),
     "x", ["--config.data.source=arrays needs --config.data.corpus=DOCS.npy"]),
    ("train-arrays-ids-short", lambda f: lambda: jobs.train_and_evaluate(arrays_cfg(f, corpus=f["tmp"] / "x5.npy", corpus_ids=f["tmp"] / "short.txt"), str(f["tmp"] / "x")),
     "x", ["short.txt: 2 ids but", "x5.npy has 5 rows"]),
    ("train-a-product-quantizer", lambda f: lambda: jobs.train_and_evaluate(with_method(arrays_cfg(f, corpus=f["tmp"] / "x5.npy"), "distill_pq_docs"), str(f["tmp"] / "x")),
     "x", ["distill_pq_docs stores codes priced in bytes", "launch.pareto --methods truncate,pca,distill_pq_docs"]),
]  # fmt: skip


@pytest.mark.parametrize("build,out,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_it_and_writes_nothing(files, capsys, build, out, words):
    tmp = files["tmp"]
    if not (tmp / "wide.npz").exists():
        w = np.random.default_rng(1).normal(size=(48, 8)).astype(np.float32)
        export.save(
            NestedCompressor({"w": w, "b": np.zeros(8, np.float32)}, np.arange(8), (8,)),
            tmp / "wide.npz",
        )
    before = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
    target = tmp / out
    existed = target.exists()
    with pytest.raises(SystemExit) as err:
        cli.guarded(build(files))
    lines = capsys.readouterr().err.strip().splitlines()
    assert err.value.code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert target.exists() == existed and not Path(f"{target}.partial").exists()
    assert sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")) == before, "files changed"
