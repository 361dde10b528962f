"""IVF indexes at any size (smec_jax/serving/ivf.py, ``launch.index --kind ivf_*``):

* built shard by shard and merged on disk, an index searches exactly as the same faiss
  index filled in memory in one go; a Beam folder of shards and ``launch.compress``'s one
  folder of the same rows give the same index (same training sample, same lists, ids);
* ``ivf_flat`` and ``ivf_sq8`` probing every list are the exact search (brute force over
  the floats; the ``sq8`` index over the same int8 codes), and ``ivf_sq8``'s lists hold
  our int8 codes byte for byte;
* the folder can be moved (``launch.evaluate --index`` scoring one: tests/test_serving.py);
  bad settings are one line and leave nothing behind.
"""

import subprocess
import sys

import numpy as np
import pytest

from smec_jax import jobs
from smec_jax.core import export
from smec_jax.serving import beam, codes_folder, compress, faiss_index, ivf

N, D, SIZE = 1200, 32, 16
SPANS = ((0, 300), (300, 700), (700, 1000), (1000, 1200))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{precision: (launch.compress folder, Beam sharded folder)} of the same 1,200 rows."""
    tmp = tmp_path_factory.mktemp("ivf")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, D))
    x = (centres[rng.integers(0, 12, N)] + 0.4 * rng.normal(size=(N, D))).astype(np.float32)
    ids = [f"doc-{i}" for i in range(N)]
    w, _ = np.linalg.qr(rng.normal(size=(D, D)))
    eye = {"w": w.astype(np.float32), "b": np.zeros(D, np.float32)}
    npz = export.save(export.NestedCompressor(eye, np.arange(D), (D, SIZE)), tmp / "c.npz")
    np.save(tmp / "all.npy", x)
    (tmp / "all.ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (tmp / "in").mkdir()
    for k, (a, b) in enumerate(SPANS):
        np.save(tmp / "in" / f"part-{k}.npy", x[a:b])
        (tmp / "in" / f"part-{k}.ids.txt").write_text("".join(f"{i}\n" for i in ids[a:b]))
    out = {}
    for precision in ("int8", "float16"):
        one = compress.compress_embeddings(
            npz, tmp / "all.npy", tmp / f"one-{precision}", size=SIZE, precision=precision,
            ids_file=str(tmp / "all.ids.txt"), verbose=False,
        )  # fmt: skip
        shards = beam.run(
            str(tmp / "in" / "part-*"), npz, tmp / f"shards-{precision}", size=SIZE,
            precision=precision, verbose=False,
        )  # fmt: skip
        out[precision] = (one, shards)
    return tmp, out


def queries(n=40):
    return np.random.default_rng(7).normal(size=(n, SIZE)).astype(np.float32)


def search(folder, q, k=10, nprobe=None):
    index = faiss_index.load(folder)
    if nprobe is not None:
        index.index.nprobe = nprobe
    return index.index.search(q, k)


@pytest.mark.parametrize("kind,precision", [("ivf_sq8", "int8"), ("ivf_pq", "float16")])
def test_built_on_disk_shard_by_shard_searches_as_built_in_memory(folders, kind, precision):
    tmp, out = folders
    one, shards = out[precision]
    a = ivf.build(one, kind, tmp / f"{kind}-one", nlist=16, block_rows=256, verbose=False)
    b = ivf.build(shards, kind, tmp / f"{kind}-shards", nlist=16, verbose=False)
    # the reference: the same trained index, every row added at once, lists in memory
    man = codes_folder.read_manifest(one)
    params = ivf.resolve(man, kind, nlist=16)
    x = ivf.sample(one, params.train_rows)
    ref = ivf.trained_index(kind, man, params, x)
    arr, _, _ = codes_folder.load_codes(one)
    ref.add(ivf._floats(np.asarray(arr), man))
    ref.nprobe = params.nprobe
    q = queries()
    s_ref, r_ref = ref.search(q, 10)
    for folder in (a, b):
        s, r = search(folder, q)
        np.testing.assert_array_equal(r, r_ref)
        np.testing.assert_array_equal(s, s_ref)
        assert (folder / "ids.txt").read_text() == (tmp / "all.ids.txt").read_text()
    assert (a / faiss_index.LISTS).stat().st_size == (b / faiss_index.LISTS).stat().st_size


def test_probing_every_list_is_the_exact_search_and_sq8_lists_hold_our_codes(folders):
    tmp, out = folders
    q = queries()
    # ivf_flat over float16 codes: brute force over the floats
    one, _ = out["float16"]
    arr, _, _ = codes_folder.load_codes(one)
    flat = ivf.build(one, "ivf_flat", tmp / "flat", nlist=8, verbose=False)
    s, r = search(flat, q, nprobe=8)
    exact = q @ np.asarray(arr, np.float32).T
    np.testing.assert_allclose(s, np.take_along_axis(exact, r, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, -np.sort(-exact, 1)[:, :10], rtol=1e-5, atol=1e-5)
    # ivf_sq8 over int8 codes: the sq8 index's scores, and its lists are our codes
    _, shards = out["int8"]
    sq = ivf.build(shards, "ivf_sq8", tmp / "sq", nlist=8, verbose=False)
    s, r = search(sq, q, nprobe=8)
    s_flat, r_flat = faiss_index.load(jobs.build_index(str(shards), "sq8", str(tmp / "sq8")))\
        .index.search(q, 10)  # fmt: skip
    np.testing.assert_allclose(s, s_flat, rtol=1e-5, atol=1e-5)
    codes8, _, _ = codes_folder.load_codes(shards)
    loaded = faiss_index.load(sq).index  # keep it: its lists live as long as it does
    inv = loaded.invlists
    seen = 0
    for lst in range(inv.nlist):
        n = inv.list_size(lst)
        if n:
            rows = faiss_index.faiss_module().rev_swig_ptr(inv.get_ids(lst), n).copy()
            stored = faiss_index.faiss_module().rev_swig_ptr(inv.get_codes(lst), n * SIZE)
            np.testing.assert_array_equal(stored.reshape(n, SIZE), codes8[rows].view(np.uint8))
            seen += n
    assert seen == N


def test_a_moved_folder_searches_the_same(folders, tmp_path):
    tmp, out = folders
    _, shards = out["int8"]
    built = jobs.build_index(str(shards), "ivf_sq8", str(tmp_path / "a"), nlist=8, nprobe=4)
    before = search(built, queries())
    moved = built.rename(tmp_path / "b")
    after = search(moved, queries())
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(x, y)
    assert faiss_index.load(moved).params["nprobe"] == 4


@pytest.mark.parametrize(
    "kind,precision,kw,words",
    [
        ("ivf_pq", "int8", {}, "an ivf_pq index holds float32/float16 codes"),
        ("ivf_flat", "float16", {"nlist": 5000}, "--nlist 5000: needs 1 to 1200"),
        ("ivf_pq", "float16", {"pq_m": 5}, "--pq_m 5 must divide the codes' 16 dims"),
        ("ivf_flat", "float16", {"nlist": 64, "train_rows": 10}, "--train_rows 10: needs 64"),
    ],
)
def test_bad_settings_are_one_line_and_write_nothing(folders, tmp_path, kind, precision, kw, words):
    _, out = folders
    with pytest.raises(ValueError, match=words.replace("/", ".")) as err:
        jobs.build_index(str(out[precision][1]), kind, str(tmp_path / "x"), **kw)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


def test_the_command_line_builds_from_a_shard_folder_with_progress(folders, tmp_path):
    _, out = folders
    run = subprocess.run(
        [sys.executable, "-m", "launch.index", "--codes", str(out["float16"][1]),
         "--kind", "ivf_pq", "--nlist", "8", "--pq_m", "4", "--out", str(tmp_path / "i")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert (
        "[block 4] 1,200/1,200 rows | ETA" in run.stdout and "ivf_pq index of 1,200" in run.stdout
    )
    params = faiss_index.load(tmp_path / "i").params
    assert (params["nlist"], params["pq_m"], params["nprobe"]) == (8, 4, 8)
    assert faiss_index.load(tmp_path / "i").index.code_size == 4  # bytes per vector


def test_an_ids_file_shorter_than_the_codes_is_one_line_and_writes_nothing(folders, tmp_path):
    import shutil

    from smec_jax.datasets.data import DataError

    _, out = folders
    short = tmp_path / "short"
    shutil.copytree(out["float16"][0], short)
    lines = (short / "ids.txt").read_text().splitlines(keepends=True)
    (short / "ids.txt").write_text("".join(lines[:1100]))
    with pytest.raises(DataError, match="ids.txt ends at line 1100 but codes.npy has 1200 rows"):
        ivf.build(short, "ivf_flat", tmp_path / "x", nlist=8, block_rows=256, verbose=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
