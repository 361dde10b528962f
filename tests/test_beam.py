"""Compression on Apache Beam (smec_jax/serving/beam.py, DirectRunner):

* several ``.npy`` and Parquet shards give, byte for byte, what ``launch.compress`` gives on
  their concatenation: codes, ids and the manifest's calibration, at int8, binary and
  float32, written as ``.npy`` or Parquet shards;
* the folder serves like a ``launch.compress`` folder: ``launch.index`` builds from it and
  its search equals the one over ``launch.compress``'s folder;
* a bad shard (another D, a NaN row, an id that another shard holds) fails the run with one
  line naming the shard and the row, and nothing is left under ``--out``.
"""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smec_jax import cli, jobs
from smec_jax.core import export
from smec_jax.serving import beam, codes_folder, compress

N, D = 900, 32
SPANS = ((0, 250), (250, 520), (520, 700), (700, 900))  # the last two shards: Parquet


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("beam")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    ids = [f"doc-{i}" for i in range(N)]
    w, _ = np.linalg.qr(rng.normal(size=(D, D)))
    eye = {"w": w.astype(np.float32), "b": np.zeros(D, np.float32)}
    npz = export.save(export.NestedCompressor(eye, np.arange(D), (D, 16)), tmp / "c.npz")
    np.save(tmp / "all.npy", x)
    (tmp / "all.ids.txt").write_text("".join(f"{i}\n" for i in ids))
    inp = tmp / "in"
    inp.mkdir()
    for k, (a, b) in enumerate(SPANS):
        if k < 2:
            np.save(inp / f"part-{k}.npy", x[a:b].astype(np.float16 if k else np.float32))
            (inp / f"part-{k}.ids.txt").write_text("".join(f"{i}\n" for i in ids[a:b]))
        else:
            vec = pa.FixedSizeListArray.from_arrays(pa.array(x[a:b].ravel()), D)
            pq.write_table(pa.table({"id": ids[a:b], "vector": vec}), inp / f"part-{k}.parquet")
    # the float16 shard is what launch.compress must read too
    full = x.copy()
    full[250:520] = x[250:520].astype(np.float16).astype(np.float32)
    np.save(tmp / "all.npy", full)
    return tmp, npz, ids


@pytest.mark.parametrize(
    "precision,fmt", [("int8", "npy"), ("binary", "parquet"), ("float32", "npy")]
)
def test_shards_equal_launch_compress_on_their_concatenation(data, precision, fmt):
    tmp, npz, ids = data
    ref = compress.compress_embeddings(
        npz, tmp / "all.npy", tmp / f"ref-{precision}", size=16, precision=precision,
        ids_file=str(tmp / "all.ids.txt"), verbose=False,
    )  # fmt: skip
    got = beam.run(
        str(tmp / "in" / "part-*"), npz, tmp / f"beam-{precision}", size=16,
        precision=precision, fmt=fmt, verbose=False,
    )  # fmt: skip
    a, ia, ma = codes_folder.load_codes(ref)
    b, ib, mb = codes_folder.load_codes(got)
    np.testing.assert_array_equal(b, np.asarray(a))
    assert b.dtype == a.dtype and ib == ia == ids
    assert mb.calibration == ma.calibration and mb.settings() == ma.settings()
    assert [s["rows"] for s in mb.shards] == [e - s for s, e in SPANS] and mb.rows == N
    if precision == "int8":  # launch.index takes the folder; its search is the other's
        q = np.random.default_rng(3).normal(size=(5, 16)).astype(np.float32)
        from smec_jax.serving import faiss_index

        p_ref = jobs.build_index(str(ref), "sq8", str(tmp / "idx-ref"))
        p_got = jobs.build_index(str(got), "sq8", str(tmp / "idx-got"))
        s1, r1 = faiss_index.load(p_ref).index.search(q, 10)
        s2, r2 = faiss_index.load(p_got).index.search(q, 10)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(s1, s2)
        assert (p_got / "ids.txt").read_text() == (p_ref / "ids.txt").read_text()


def _bad(tmp, name, make):
    folder = tmp / name
    folder.mkdir()
    for k in range(2):
        x = np.random.default_rng(k).normal(size=(40, D)).astype(np.float32)
        ids = [f"s{k}-{i}" for i in range(40)]
        x, ids = make(k, x, ids)
        np.save(folder / f"part-{k}.npy", x)
        (folder / f"part-{k}.ids.txt").write_text("".join(f"{i}\n" for i in ids))
    return folder


def _nan(k, x, ids):
    if k == 1:
        x[7, 3] = np.nan
    return x, ids


def _wide(k, x, ids):
    return (np.hstack([x, x[:, :4]]) if k == 1 else x), ids


def _dup(k, x, ids):
    if k == 1:
        ids[12] = "s0-5"
    return x, ids


@pytest.mark.parametrize(
    "name,make,words",
    [
        ("nan", _nan, ["part-1.npy: row 7 is NaN/Inf"]),
        ("wide", _wide, ["part-1.npy: 36-d rows but the compressor takes 32-d"]),
        ("dup", _dup, ["part-1.npy: row 12 repeats id 's0-5' of", "part-0.npy row 5"]),
    ],
)
def test_a_bad_shard_is_one_line_and_nothing_is_written(data, capsys, name, make, words):
    tmp, npz, _ = data
    folder = _bad(tmp, f"bad-{name}", make)
    out = tmp / f"out-{name}"
    for precision in ("float32", "int8"):  # the pipeline's check, then the calibration's
        with pytest.raises(SystemExit) as err:
            cli.guarded(
                lambda p=precision: beam.run(
                    str(folder / "*.npy"), npz, out, size=16, precision=p, verbose=False
                )
            )
        lines = capsys.readouterr().err.strip().splitlines()
        assert err.value.code == 2 and len(lines) == 1, lines
        for w in words:
            assert w in lines[0], (w, lines[0])
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_the_launcher_takes_pipeline_options_after_a_double_dash(data):
    tmp, npz, _ = data
    out = tmp / "cli"
    cmd = [
        sys.executable, "-m", "launch.compress_beam", f"--input={tmp / 'in' / 'part-*.npy'}",
        f"--compressor={npz}", f"--out={out}", "--size=16", "--precision=int8",
        "--", "--runner=DirectRunner", "--direct_num_workers=2",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    codes_arr, ids, man = codes_folder.load_codes(out)
    assert man.rows == 520 and len(man.shards) == 2 and ids[0] == "doc-0"


def test_the_workers_import_no_jax():
    """What a Beam worker imports (the transform, the numpy half of the export, the codes)
    loads neither JAX nor the trainer: a worker image needs numpy and apache-beam."""
    code = (
        "import sys; import smec_jax.serving.beam as b; b._dofn_class(); "
        "bad = [m for m in ('jax', 'flax', 'optax') if m in sys.modules]; "
        "assert not bad, bad"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-1500:]
