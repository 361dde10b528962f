"""Compress embeddings at scale: an exported compressor applied to a corpus or its queries
at one size and precision, streamed in chunks, resumable, sharded over processes.

  codes = compress_embeddings("compressor.npz", "emb/", "codes/corpus", part="corpus",
                              size=64, precision="int8")
  compress_embeddings("compressor.npz", "emb/", "codes/queries", part="queries",
                      like="codes/corpus")   # same compressor, size, precision, calibration

Queries (``part="queries"``) go through the query map of an asymmetric compressor. The
output folder (:mod:`smec_jax.serving.codes_folder`) holds ``codes.npy`` (one row per input
row), ``ids.txt`` and ``manifest.json``. It appears in one rename when complete; until then the
work lives in ``<out>.partial/`` with a progress file per process, so a killed run resumes
from its last finished chunk. Memory stays flat: the input is memory-mapped and read one
chunk at a time. With several processes (``jax.distributed``), each takes every P-th chunk
and process 0 finishes the folder.

The phases, in order: resolve and check every input (nothing written), calibrate, open (or
resume) the partial folder, write the chunks, finish the folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from smec_jax import files, interrupts
from smec_jax.core import codes, export
from smec_jax.datasets import arrays
from smec_jax.datasets.data import DataError, read_ids
from smec_jax.progress import eta
from smec_jax.serving.codes_folder import MANIFEST, Manifest, file_sha256, read_manifest

PARTS = {"corpus": ("corpus.npy", "corpus_ids.txt"), "queries": ("queries.npy", "query_ids.txt")}


def _source(path: Path, part: str, ids_file: str | None) -> tuple[Path, Path | None, str]:
    """The .npy to read, its ids file and the encoder name."""
    if path.is_dir():
        npy, ids = (path / f for f in PARTS[part])
        meta = path / "meta.json"
        encoder = (
            json.loads(meta.read_text()).get("model", path.name) if meta.is_file() else path.name
        )
        return npy, ids, str(encoder)
    return path, Path(ids_file) if ids_file else None, ""


def _unit(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, np.float32)
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


def corpus_codes_table(path, ids: list[str], part: str, width: int) -> np.ndarray:
    """The (n, N) codes of a ``corpus_codes.npz``, checked against the corpus ids."""
    if part != "corpus":
        raise ValueError("--corpus_codes holds document codes; use it with --part corpus")
    try:
        with np.load(path, allow_pickle=False) as f:
            got_ids, table = [str(i) for i in f["ids"]], np.asarray(f["codes"], np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a corpus_codes.npz ({e})") from None
    if len(got_ids) != len(ids):
        raise DataError(f"{path}: codes for {len(got_ids)} documents, the input has {len(ids)}")
    for row, (a, b) in enumerate(zip(got_ids, ids, strict=True)):
        if a != b:
            raise DataError(
                f"{path}: row {row} is document {a!r} but the input's row {row} is {b!r}; "
                "these codes were fitted for another corpus"
            )
    if table.shape[1] != width:
        raise DataError(f"{path}: {table.shape[1]}-d codes, the compressor outputs {width}")
    return table


@dataclasses.dataclass(frozen=True)
class _Job:
    """What one compression reads and writes, resolved and checked before anything is written."""

    out: Path
    exported: dict
    sha: str
    part: str
    size: int
    precision: str
    ref: Manifest | None
    npy: Path
    x_all: np.ndarray
    ids: list[str]
    encoder: str
    table: np.ndarray | None

    def _mapped(self, take, first_row: int) -> np.ndarray:
        if self.table is not None:
            return _unit(self.table[take, : self.size])
        x = arrays.normalized_chunk(self.x_all[take], self.npy, first_row)
        return export.apply_exported(self.exported, x, self.size, self.part == "queries")

    def compressed(self, start: int, end: int) -> np.ndarray:
        """Rows ``start:end`` as unit vectors at the job's size (before quantization)."""
        return self._mapped(slice(start, end), start)

    def compressed_rows(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (sorted), as :meth:`compressed`."""
        return self._mapped(rows, int(rows[0]))


def compress_embeddings(
    compressor: str | Path,
    source: str | Path,
    out: str | Path,
    *,
    part: str = "corpus",
    size: int | None = None,
    precision: str | None = None,
    like: str | Path | None = None,
    ids_file: str | None = None,
    chunk: int = 65536,
    verbose: bool = True,
    stop_after_chunks: int | None = None,
    corpus_codes: str | Path | None = None,
) -> Path:
    """Writes the codes folder ``out``; returns it. See the module docstring.

    Args:
      compressor: an exported ``compressor.npz``.
      source: an embedding folder (its ``part``: corpus or queries) or an (n, D) ``.npy``.
      size, precision: the code; with ``like`` (an existing codes folder, e.g. the corpus's)
        both and the calibration are taken from it, and must agree if given.
      ids_file: row ids for a bare ``.npy`` (default: row numbers).
      corpus_codes: a ``corpus_codes.npz`` of free per-document codes
        (:mod:`smec_jax.training.doc_codes`) fitted with this compressor: the corpus's codes are
        then its rows (same ids, same order), not the map's outputs.
      stop_after_chunks: stop (as if killed) after this many chunks; for tests.
    """
    import jax

    job = _resolve(compressor, source, out, part, size, precision, like, ids_file, corpus_codes)
    pid, n_proc = jax.process_index(), jax.process_count()
    n = len(job.ids)
    spans = list(codes.chunks(n, chunk))
    mine = [i for i in range(len(spans)) if i % n_proc == pid]
    cal = _calibration(job, spans, mine, chunk)
    settings = {
        "compressor_sha256": job.sha,
        "size": job.size,
        "precision": job.precision,
        "rows": n,
        "source": str(job.npy),
        "chunk": chunk,
    }
    if corpus_codes is not None:
        settings["corpus_codes_sha256"] = file_sha256(corpus_codes)
    settings["calibration"] = cal.to_json()
    work = job.out.with_name(job.out.name + ".partial")
    fresh = not work.exists()
    _open_partial(work, settings, cal, n)
    try:
        _write_chunks(job, work, cal, spans, mine, verbose, stop_after_chunks)
    except DataError:  # a bad row: the input must be fixed, so a folder this run began goes
        if fresh and jax.process_index() == 0:
            shutil.rmtree(work, ignore_errors=True)
        raise
    _finish(job, work, cal)
    return job.out


def _resolve(compressor, source, out, part, size, precision, like, ids_file, corpus_codes) -> _Job:
    """Checks every argument against the compressor, ``like`` and the input (nothing written)."""
    out, source = Path(out), Path(source)
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; use corpus or queries")
    if out.exists():
        raise ValueError(f"{out} already exists; remove it or choose another --out")
    files.check_workdir(out, "--out")
    exported = export.load_numpy(compressor)
    sha = file_sha256(export.npz_path(compressor))
    sizes = [int(s) for s in exported["sizes"]]
    ref = read_manifest(like) if like else None
    if ref is not None:
        if ref.compressor_sha256 != sha:
            raise ValueError(f"{like} was made with another compressor than {compressor}")
        if size is not None and size != ref.size:
            raise ValueError(f"--size {size} but {like} holds size {ref.size}; drop --size")
        if precision not in (None, ref.precision, "float32", "float16"):
            raise ValueError(
                f"--precision {precision} but {like} holds {ref.precision} codes: use the same "
                "precision (symmetric scoring) or float32/float16 queries (asymmetric)"
            )
        size, precision = ref.size, precision or ref.precision
    if size is None or precision is None:
        raise ValueError("give --size and --precision (or --like CODES_DIR)")
    codes.check_precision(precision)
    if size not in sizes:
        raise ValueError(f"size {size}: {compressor} was trained for sizes {sizes}")
    npy, ids_path, encoder = _source(source, part, ids_file)
    if not npy.is_file():
        raise DataError(f"{npy}: file not found")
    x_all = np.load(npy, mmap_mode="r", allow_pickle=False)
    if x_all.ndim != 2:
        raise DataError(f"{npy}: expected an (n, D) array, got shape {x_all.shape}")
    n, in_dim = x_all.shape
    if in_dim != export.input_dim(exported):
        raise ValueError(
            f"{compressor} takes {export.input_dim(exported)}-d embeddings but {npy} is {in_dim}-d "
            "(another encoder?)"
        )
    want_encoder = str(exported.get("encoder", ""))
    if want_encoder and encoder and want_encoder != encoder:
        raise ValueError(
            f"{compressor} was trained on {want_encoder} embeddings, {source} holds {encoder}"
        )
    ids = read_ids(ids_path) if ids_path else [str(i) for i in range(n)]
    if len(ids) != n:
        raise DataError(f"{ids_path}: {len(ids)} ids but {npy} has {n} rows")
    table = None
    if corpus_codes is not None:
        table = corpus_codes_table(corpus_codes, ids, part, max(sizes))
    return _Job(
        out, exported, sha, part, size, precision, ref, npy, x_all, ids,
        encoder or want_encoder, table,
    )  # fmt: skip


def _calibration(job: _Job, spans, mine, chunk) -> codes.Calibration:
    """From ``like``, else from this corpus (int8 ranges: every row; binary thresholds:
    medians of evenly spaced rows), computed alike on every process."""
    if job.ref is not None and job.precision == job.ref.precision:
        return codes.Calibration.from_json(job.ref.calibration)
    if job.precision in ("float32", "float16"):
        return codes.Calibration(job.precision, job.size)
    return _calibrate(job, spans, mine, chunk)


def _open_partial(work: Path, settings: dict, cal: codes.Calibration, n: int) -> None:
    """The partial folder: created by process 0 (or resumed if its settings agree), checked
    by everyone."""
    import jax

    if jax.process_index() == 0:
        work.mkdir(parents=True, exist_ok=True)
        sfile = work / "settings.json"
        if sfile.is_file() and json.loads(sfile.read_text()) != settings:
            raise ValueError(
                f"{work} holds a partial run with other settings; delete it or use them again"
            )
        dtype, width = codes.code_dtype_and_width(cal)
        if not (work / "codes.npy").is_file():
            with files.atomic_path(work / "codes.npy", suffix=".npy") as tmp:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, width)).flush()
        files.write_json(sfile, settings)
    _barrier("compress: partial folder ready")


def _write_chunks(job: _Job, work: Path, cal, spans, mine, verbose, stop_after_chunks) -> None:
    """This process's chunks not yet done, each flushed and recorded before the next."""
    import jax

    pid, n_proc = jax.process_index(), jax.process_count()
    codes_mm = np.load(work / "codes.npy", mmap_mode="r+")
    progress = work / f"progress-{pid}-of-{n_proc}.json"
    done = set(json.loads(progress.read_text())["chunks"]) if progress.is_file() else set()
    todo = [i for i in mine if i not in done]
    t0 = time.perf_counter()
    for k, i in enumerate(todo):
        start, end = spans[i]
        codes_mm[start:end] = codes.encode(job.compressed(start, end), cal)
        codes_mm.flush()
        interrupts.point("compress-chunk-written", i)  # written, not yet recorded as done
        done.add(i)
        files.write_json(progress, {"chunks": sorted(done)})
        if verbose and pid == 0:
            el = time.perf_counter() - t0
            print(
                f"compress {job.part}: chunk {len(done)}/{len(mine)} | ETA {eta(el, k + 1, len(todo))}",
                flush=True,
            )
        if stop_after_chunks is not None and k + 1 >= stop_after_chunks:
            raise KeyboardInterrupt(f"stopped after {stop_after_chunks} chunks")
    del codes_mm
    _barrier("compress: every chunk written")


def _finish(job: _Job, work: Path, cal: codes.Calibration) -> None:
    """Process 0 writes the ids and the manifest, then renames the folder into place."""
    import jax

    if jax.process_index() == 0:
        manifest = Manifest(
            compressor_sha256=job.sha,
            encoder=job.encoder,
            input_dim=job.x_all.shape[1],
            size=job.size,
            precision=job.precision,
            calibration=cal.to_json(),
            rows=len(job.ids),
            bytes_per_vector=codes.bytes_per_vector(job.precision, job.size),
            part=job.part,
            source=str(job.npy),
        )
        (work / "ids.txt").write_text("".join(f"{i}\n" for i in job.ids), encoding="utf-8")
        files.write_json(work / MANIFEST, dataclasses.asdict(manifest))
        for f in work.glob("progress-*.json"):
            f.unlink()
        (work / "settings.json").unlink()
        work.rename(job.out)
    _barrier("compress: folder complete")


def _calibrate(job: _Job, spans, mine, chunk):
    import jax

    n = len(job.ids)
    cal = codes.Calibrator(job.precision, job.size, n)
    if job.precision != "int8":  # the sampled rows only, read by every process alike
        rows = np.flatnonzero(cal._keep(0, n))
        for s in range(0, len(rows), chunk):
            cal._sampled.append(job.compressed_rows(rows[s : s + chunk]))
        return cal.finish()
    for i in mine:  # int8: exact ranges over this process's chunks, then over all processes
        start, end = spans[i]
        cal.add(job.compressed(start, end), start)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        both = multihost_utils.process_allgather(np.stack([cal._min, cal._max]))
        cal._min, cal._max = both[:, 0].min(axis=0), both[:, 1].max(axis=0)
    return cal.finish()


def _barrier(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
