"""faiss IVF indexes over codes folders of any size: trained on a sample, filled block by
block (a shard of a ``launch.compress_beam`` folder, or ``block_rows`` rows of a
``launch.compress`` folder's memory-mapped ``codes.npy``), merged on disk with faiss's own
tools (``faiss.contrib.ondisk.merge_ondisk``: ``OnDiskInvertedLists``), and searched with
the inverted lists memory-mapped. Memory holds one block and the trained index, never the
whole corpus.

Kinds (``launch.index --kind``), each for the codes it can hold:

* ``ivf_flat``: float32 / float16 codes in ``IndexIVFFlat`` (inner product, the floats
  themselves);
* ``ivf_sq8``: int8 codes in ``IndexIVFScalarQuantizer`` 8-bit, not by residual, with *our*
  calibration as its ranges: its lists hold exactly our int8 codes (as ``sq8`` does);
* ``ivf_pq``: float codes re-encoded by faiss's ``IndexIVFPQ`` (``pq_m`` bytes per vector,
  by residual), its codebooks trained on the sample.

The coarse quantizer (``nlist`` inner-product k-means centroids) is trained on ``train_rows``
evenly spaced rows. Searching probes ``nprobe`` lists; ``nprobe == nlist`` is exact for
``ivf_flat`` and ``ivf_sq8``. An index folder holds ``index.faiss`` (the trained index),
``lists.ivfdata`` (the inverted lists), ``index.json`` and ``ids.txt``; it can be moved
(the lists are found next to the index file).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from smec_jax import files
from smec_jax.core import codes
from smec_jax.datasets.data import DataError
from smec_jax.progress import eta
from smec_jax.serving import codes_folder
from smec_jax.serving.faiss_index import IVF, LISTS, check_kind, disk_bytes, faiss_module


def default_nlist(n: int) -> int:
    """faiss's rule of thumb, about 4 sqrt(n) lists, as a power of two, with at least 39
    training points per list (k-means' minimum): 1 for fewer than 78 rows."""
    cap = min(4 * math.sqrt(n), n / 39)
    return 1 << max(0, int(math.floor(math.log2(cap)))) if cap >= 1 else 1


def default_train_rows(n: int, nlist: int, kind: str) -> int:
    """256 rows per list (faiss's k-means samples no more), and 256 per PQ centroid for
    ``ivf_pq``'s codebooks; at most every row."""
    return min(n, max(256 * nlist, 256 * 256 if kind == "ivf_pq" else 0))


def blocks(
    folder: str | Path, block_rows: int = 1 << 20, with_ids: bool = True
) -> Iterator[tuple[int, np.ndarray, list]]:
    """``(first row, codes, ids)`` of a codes folder in row order: each shard of a sharded
    folder, or ``block_rows`` rows at a time of a memory-mapped ``codes.npy`` with the same
    lines of ``ids.txt`` (read as they come; ``with_ids=False``: no ids, ``[]``)."""
    folder = Path(folder)
    man = codes_folder.read_manifest(folder)
    if man.shards:
        start = 0
        for s in man.shards:
            arr, ids = codes_folder.read_shard(folder / s["codes"], folder / s["ids"], man)
            yield start, arr, ids
            start += len(arr)
        return
    arr = np.load(folder / "codes.npy", mmap_mode="r")
    with open(folder / "ids.txt", encoding="utf-8") as lines:
        for start in range(0, len(arr), block_rows):
            block = arr[start : start + block_rows]
            ids = []
            if with_ids:  # the block's lines of ids.txt, no further
                ids = [line.rstrip("\n") for line in itertools.islice(lines, len(block))]
            if with_ids and len(ids) != len(block):
                raise DataError(
                    f"{folder}: ids.txt ends at line {start + len(ids)} but codes.npy has "
                    f"{len(arr)} rows"
                )
            yield start, block, ids


def _floats(arr: np.ndarray, man: codes_folder.Manifest) -> np.ndarray:
    """Rows as float32, int8 codes decoded with their calibration (faiss's 8-bit scalar
    quantizer encodes those floats back to the same codes)."""
    if man.precision == "int8":
        return np.ascontiguousarray(
            codes.decode(np.asarray(arr), codes.Calibration.from_json(man.calibration)),
            np.float32,
        )
    return np.ascontiguousarray(arr, np.float32)


def sample(folder: str | Path, rows: int, block_rows: int = 1 << 20) -> np.ndarray:
    """``rows`` evenly spaced rows of a codes folder as float32, read block by block."""
    man = codes_folder.read_manifest(folder)
    want = np.unique(np.linspace(0, man.rows - 1, rows).astype(np.int64))
    parts = []
    for start, arr, _ in blocks(folder, block_rows, with_ids=False):
        take = want[(want >= start) & (want < start + len(arr))] - start
        if len(take):
            parts.append(_floats(np.asarray(arr[take]), man))
    return np.concatenate(parts)


@dataclasses.dataclass(frozen=True)
class Params:
    nlist: int
    nprobe: int
    train_rows: int
    pq_m: int = 0  # ivf_pq only: bytes per vector


def resolve(man: codes_folder.Manifest, kind: str, nlist=0, nprobe=16, train_rows=0, pq_m=0):
    """The build's :class:`Params` (0: the defaults), or one line saying what is wrong."""
    if kind not in IVF:
        raise ValueError(f"unknown IVF kind {kind!r}; use one of {', '.join(IVF)}")
    n = man.rows
    nlist = nlist or default_nlist(n)
    if not 1 <= nlist <= n:
        raise ValueError(f"--nlist {nlist}: needs 1 to {n} (the folder's rows) lists")
    train_rows = train_rows or default_train_rows(n, nlist, kind)
    if not nlist <= train_rows <= n:
        raise ValueError(f"--train_rows {train_rows}: needs {nlist} (--nlist) to {n} rows")
    if kind == "ivf_pq":
        pq_m = pq_m or max(1, man.size // 4)
        if man.size % pq_m:
            raise ValueError(f"--pq_m {pq_m} must divide the codes' {man.size} dims")
    if nprobe < 1:
        raise ValueError(f"--nprobe {nprobe}: probe at least 1 list")
    return Params(nlist=nlist, nprobe=min(nprobe, nlist), train_rows=train_rows, pq_m=pq_m)


def trained_index(kind: str, man: codes_folder.Manifest, params: Params, x: np.ndarray):
    """The empty IVF index of ``kind``, trained on the float rows ``x``."""
    faiss = faiss_module()
    d, ip = man.size, faiss.METRIC_INNER_PRODUCT
    quantizer = faiss.IndexFlatIP(d)
    if kind == "ivf_flat":
        index = faiss.IndexIVFFlat(quantizer, d, params.nlist, ip)
    elif kind == "ivf_sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, params.nlist, faiss.ScalarQuantizer.QT_8bit, ip, False
        )
    else:
        index = faiss.IndexIVFPQ(quantizer, d, params.nlist, params.pq_m, 8, ip)
        index.pq.cp.seed, index.pq.cp.min_points_per_centroid = 0, 1
        index.do_polysemous_training = False
    index.cp.seed, index.cp.min_points_per_centroid = 0, 1
    index.own_fields = True
    quantizer.this.disown()
    index.train(x)
    if kind == "ivf_sq8":  # our calibration, not faiss's ranges of the sample: our codes
        cal = codes.Calibration.from_json(man.calibration)
        trained = np.concatenate([cal.vmin, cal.vdiff]).astype(np.float32)
        faiss.copy_array_to_vector(trained, index.sq.trained)
    return index


def build(
    codes_dir: str | Path,
    kind: str,
    out: str | Path,
    *,
    nlist: int = 0,
    nprobe: int = 16,
    train_rows: int = 0,
    pq_m: int = 0,
    block_rows: int = 1 << 20,
    verbose: bool = True,
) -> Path:
    """``launch.index --kind ivf_*``: writes the index folder ``out`` (through
    ``out.partial``, renamed when whole; nothing is left on failure)."""
    faiss = faiss_module()
    from faiss.contrib.ondisk import merge_ondisk

    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; remove it or choose another --out")
    files.check_workdir(out, "--out")
    man = codes_folder.read_manifest(codes_dir)
    check_kind(kind, man, codes_dir)
    params = resolve(man, kind, nlist, nprobe, train_rows, pq_m)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "blocks").mkdir(parents=True)
    try:
        start_time = time.perf_counter()
        index = trained_index(kind, man, params, sample(codes_dir, params.train_rows, block_rows))
        faiss.write_index(index, str(tmp / "trained.faiss"))
        if verbose:
            print(
                f"trained {kind} ({params.nlist} lists) on {params.train_rows:,} rows "
                f"in {time.perf_counter() - start_time:.1f}s"
            )
        names, done = [], 0
        with open(tmp / "ids.txt", "w", encoding="utf-8") as ids_out:
            for start, arr, ids in blocks(codes_dir, block_rows):
                block = faiss.read_index(str(tmp / "trained.faiss"))
                block.add_with_ids(_floats(arr, man), np.arange(start, start + len(arr)))
                names.append(str(tmp / "blocks" / f"{len(names):05d}.faiss"))
                faiss.write_index(block, names[-1])
                del block
                ids_out.writelines(f"{i}\n" for i in ids)
                done += len(arr)
                if verbose:
                    elapsed = time.perf_counter() - start_time
                    print(f"[block {len(names)}] {done:,}/{man.rows:,} rows | ETA "
                          f"{eta(elapsed, done, man.rows)}", flush=True)  # fmt: skip
        if done != man.rows:
            raise DataError(f"{codes_dir}: {done} code rows but the manifest says {man.rows}")
        index = faiss.read_index(str(tmp / "trained.faiss"))
        merge_ondisk(index, names, str(tmp / LISTS))
        # the lists' path as it will be once renamed (a moved folder still finds them: the
        # loader looks next to index.faiss)
        lists = str(out.resolve() / LISTS)
        faiss.downcast_InvertedLists(index.invlists).filename = lists
        faiss.write_index(index, str(tmp / "index.faiss"))
        del index
        shutil.rmtree(tmp / "blocks")
        os.remove(tmp / "trained.faiss")
        meta = {
            "kind": kind,
            "params": dataclasses.asdict(params),
            "lists": lists,
            "manifest": dataclasses.asdict(man),
        }
        files.write_json(tmp / "index.json", meta)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        print(
            f"wrote {out}: {kind} index of {man.rows:,} vectors, {disk_bytes(out):,} bytes "
            f"on disk, built in {time.perf_counter() - start_time:.1f}s"
        )
    return out
