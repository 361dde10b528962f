"""Compress embeddings on Apache Beam: the exported map and its calibration as a pure map over
shards, on any runner (Direct, Dataflow, Flink, Spark).

  with beam.Pipeline(options=opts) as p:
      (p | beam.Create(shard_paths)
         | CompressEmbeddings("my_compressor/", size=64, precision="int8",
                              calibration=cal, out="gs://bucket/codes.partial"))

Input shards, each a unit of work (read whole, so shards must fit a worker's memory):

* ``.npy`` (n, D) float16/32 with a sibling ids file, one id per line
  (``part-0.npy`` -> ``part-0.ids.txt``), as ``launch.compress --ids`` takes;
* ``.parquet`` with an ``id`` column and a list / fixed-size-list vector column
  (``vector`` by default).

Each input shard becomes one output shard of codes, numbered in the sorted order of the
input paths: ``part-00000.npy`` + ``part-00000.ids.txt`` (``fmt="npy"``) or
``part-00000.parquet`` with ``id`` and ``code`` (the code row's bytes) columns. Workers use
numpy only (no JAX), with the compressor loaded once per worker (``DoFn.setup``).

:func:`run` is the launcher's whole job (``python -m launch.compress_beam``): it checks every
shard's header, computes the calibration as ``launch.compress`` computes it on the
concatenated input (or takes one from ``--like``), runs the pipeline into ``<out>.partial``,
refuses duplicate ids across shards, then writes the manifest (:mod:`.codes_folder`, with the
shard list) and renames the folder into place. A bad shard (another D, a NaN row, an id
repeated in another shard) fails the run with one line naming the shard and the row, and
leaves nothing under ``out``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from smec_jax import files
from smec_jax.core import codes
from smec_jax.core import exported as export  # numpy only: workers need no JAX
from smec_jax.datasets import arrays
from smec_jax.datasets.data import DataError
from smec_jax.serving.codes_folder import MANIFEST, Manifest, file_sha256, read_manifest

FORMATS = ("npy", "parquet")
VECTOR_COLUMN = "vector"
BUCKETS = 64  # duplicate-id check: ids are hashed into this many groups, each checked whole
_TAG = "smec-beam: "  # marks this module's refusals inside a runner's wrapped exception


def _open(path: str, mode: str = "rb"):
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path) if mode == "rb" else FileSystems.create(path)


def ids_path(shard: str) -> str:
    """``part-0.npy`` -> ``part-0.ids.txt``."""
    return re.sub(r"\.npy$", ".ids.txt", shard)


def match(pattern: str) -> list[str]:
    """The shards a glob (local or ``gs://``) matches, sorted; refuses none or another kind."""
    from apache_beam.io.filesystems import FileSystems

    found = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
    shards = [p for p in found if p.endswith((".npy", ".parquet"))]
    if not shards:
        raise DataError(f"--input {pattern}: no .npy or .parquet shard matches")
    return shards


def read_shard(path: str, vector_column: str = VECTOR_COLUMN) -> tuple[list[str], np.ndarray]:
    """(ids, (n, D) array) of one shard."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with _open(path) as f:
            table = pq.read_table(io.BytesIO(f.read()))
        for col in ("id", vector_column):
            if col not in table.column_names:
                raise DataError(f"{_TAG}{path}: no {col!r} column (has {table.column_names})")
        ids = [str(i) for i in table.column("id").to_pylist()]
        col = table.column(vector_column).combine_chunks()
        widths = np.diff(np.asarray(col.offsets)) if hasattr(col, "offsets") else None
        if widths is not None and len(widths) and (widths != widths[0]).any():
            row = int(np.argmax(widths != widths[0]))
            raise DataError(
                f"{_TAG}{path}: row {row} has {widths[row]} values, row 0 has {widths[0]}"
            )
        flat = np.asarray(col.flatten() if hasattr(col, "flatten") else col.values)
        x = flat.reshape(len(ids), -1) if len(ids) else np.zeros((0, 0), np.float32)
        return ids, x
    with _open(path) as f:
        x = np.load(io.BytesIO(f.read()), allow_pickle=False)
    try:
        with _open(ids_path(path)) as f:
            ids = f.read().decode("utf-8").splitlines()
    except (OSError, FileNotFoundError):
        raise DataError(f"{_TAG}{path}: no ids file {ids_path(path)} beside it") from None
    if x.ndim != 2:
        raise DataError(f"{_TAG}{path}: expected an (n, D) array, got shape {x.shape}")
    if len(ids) != len(x):
        raise DataError(f"{_TAG}{ids_path(path)}: {len(ids)} ids but {path} has {len(x)} rows")
    return ids, x


def _mapped(exported: dict, x: np.ndarray, size: int, queries: bool, path: str, first: int):
    """Unit rows through the map at ``size``; a bad row refused naming the shard and row."""
    if x.shape[1] != export.input_dim(exported):
        raise DataError(
            f"{_TAG}{path}: {x.shape[1]}-d rows but the compressor takes "
            f"{export.input_dim(exported)}-d embeddings"
        )
    try:
        unit = arrays.normalized_chunk(x, path, first)
    except DataError as e:
        raise DataError(f"{_TAG}{e}") from None
    return export.apply_exported(exported, unit, size, queries)


@dataclasses.dataclass(frozen=True)
class ShardDone:
    """What a worker wrote for one input shard."""

    index: int
    source: str
    codes: str
    ids: str
    rows: int


def out_names(out: str, index: int, fmt: str) -> tuple[str, str]:
    """(codes file, ids file) of output shard ``index`` (the same file twice for parquet)."""
    stem = f"{out.rstrip('/')}/part-{index:05d}"
    return (f"{stem}.parquet",) * 2 if fmt == "parquet" else (f"{stem}.npy", f"{stem}.ids.txt")


def write_shard(codes_arr: np.ndarray, ids: list[str], out: str, index: int, fmt: str):
    """Writes output shard ``index`` (see the module docstring); returns its file names."""
    codes_file, ids_file = out_names(out, index, fmt)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = np.ascontiguousarray(codes_arr)
        width = rows.dtype.itemsize * (rows.shape[1] if rows.ndim > 1 else 1)
        col = pa.array([r.tobytes() for r in rows], type=pa.binary(width))
        buf = io.BytesIO()
        pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "code": col}), buf)
        with _open(codes_file, "wb") as f:
            f.write(buf.getvalue())
        return codes_file, ids_file
    buf = io.BytesIO()
    np.save(buf, codes_arr)
    with _open(codes_file, "wb") as f:
        f.write(buf.getvalue())
    with _open(ids_file, "wb") as f:
        f.write("".join(f"{i}\n" for i in ids).encode("utf-8"))
    return codes_file, ids_file


def _dofn_class():
    import apache_beam as beam

    class CompressShard(beam.DoFn):
        """One input shard -> one output shard of codes; emits :class:`ShardDone` and, on
        the ``ids`` output, (bucket, (shard, ids)) for the duplicate check."""

        def __init__(self, compressor, size, precision, calibration, part, out, fmt, column):
            self.compressor, self.size, self.part = str(compressor), int(size), part
            self.precision, self.cal_json = precision, calibration
            self.out, self.fmt, self.column = out, fmt, column

        def setup(self):  # once per worker: the compressor copied to local disk, loaded
            import os
            import tempfile

            fd, local = tempfile.mkstemp(suffix=".npz")
            with os.fdopen(fd, "wb") as dst, _open(self.compressor) as src:
                dst.write(src.read())
            try:
                self.exported = export.load_numpy(local)
            finally:
                os.unlink(local)
            self.cal = codes.Calibration.from_json(self.cal_json)

        def process(self, element):
            index, path = element
            ids, x = read_shard(path, self.column)
            y = _mapped(self.exported, x, self.size, self.part == "queries", path, 0)
            codes_file, ids_file = write_shard(
                codes.encode(y, self.cal), ids, self.out, index, self.fmt
            )
            buckets = np.asarray([hash_bucket(i) for i in ids], np.int64)
            for b in np.unique(buckets):
                rows = np.flatnonzero(buckets == b)
                yield beam.pvalue.TaggedOutput(
                    "ids", (int(b), (path, [ids[r] for r in rows], rows.tolist()))
                )
            yield ShardDone(index, path, codes_file, ids_file, len(ids))

    return CompressShard


def hash_bucket(doc_id: str) -> int:
    """A stable bucket of an id (Python's ``hash`` differs between workers)."""
    import zlib

    return zlib.crc32(doc_id.encode("utf-8")) % BUCKETS


def check_unique(element) -> None:
    """Refuses an id that two shards (or two rows of one) hold, naming both places."""
    _, groups = element
    seen: dict[str, tuple[str, int]] = {}
    for path, ids, rows in sorted(groups, key=lambda g: g[0]):
        for i, r in zip(ids, rows, strict=True):
            if i in seen:
                where = f"{seen[i][0]} row {seen[i][1]}"
                raise DataError(f"{_TAG}{path}: row {r} repeats id {i!r} of {where}")
            seen[i] = (path, r)


def CompressEmbeddings(compressor, size, precision, calibration, out, *, part="corpus",
                       fmt="npy", vector_column=VECTOR_COLUMN):  # fmt: skip # noqa: N802
    """A Beam transform over ``(index, shard path)`` elements: each shard compressed and
    written as output shard ``index`` under ``out``; yields :class:`ShardDone` per shard
    and fails on an id that two shards hold (see the module docstring). ``calibration``:
    a :class:`~smec_jax.core.codes.Calibration` JSON (:func:`calibrate` makes one)."""
    import apache_beam as beam

    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; use npy or parquet")
    dofn = _dofn_class()(compressor, size, precision, calibration, part, out, fmt, vector_column)

    class _Compress(beam.PTransform):
        def expand(self, shards):
            res = shards | "Compress" >> beam.ParDo(dofn).with_outputs("ids", main="done")
            _ = (
                res.ids
                | "GroupIdBuckets" >> beam.GroupByKey()
                | "UniqueIds" >> beam.Map(check_unique)
            )
            return res.done

    return _Compress()


def calibrate(compressor, shards, size, precision, part="corpus", vector_column=VECTOR_COLUMN):
    """The calibration ``launch.compress`` computes on the shards' concatenation: int8 ranges
    over every row, the other codes on evenly spaced rows (read shard by shard)."""
    if precision in ("float32", "float16"):
        return codes.Calibration(precision, size)
    exported = export.load_numpy(compressor)
    cal = codes.Calibrator(precision, size, sum(shard_rows(s) for s in shards))
    start = 0
    for s in shards:
        _, x = read_shard(s, vector_column)
        cal.add(_mapped(exported, x, size, part == "queries", s, 0), start)
        start += len(x)
    return cal.finish()


def shard_rows(path: str) -> int:
    """A shard's row count from its header (``.npy``) or footer (Parquet), not its data."""
    with _open(path) as f:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            return int(pq.read_metadata(f).num_rows)
        fmt = np.lib.format
        major, _ = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _, _ = read(f)
        return int(shape[0]) if shape else 0


def _one_line(e: Exception) -> str:
    """This module's refusal inside a runner's wrapped exception, else the first line."""
    text = str(e)
    if _TAG in text:
        return text.split(_TAG, 1)[1].splitlines()[0].strip().rstrip("'\"]) ")
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def run(
    input_glob: str,
    compressor,
    out,
    *,
    size: int | None = None,
    precision: str | None = None,
    like=None,
    part: str = "corpus",
    fmt: str = "npy",
    vector_column: str = VECTOR_COLUMN,
    pipeline_args=(),
    verbose: bool = True,
) -> Path:
    """Compresses every shard of ``input_glob`` into the codes folder ``out`` on the runner
    ``pipeline_args`` name (DirectRunner by default). See the module docstring.

    ``out`` is a path on a file system that the launcher and every worker see (local for
    the DirectRunner; a shared mount such as NFS or a gcsfuse bucket for a cluster): the
    folder is renamed into place, which object stores cannot do. Inside your own pipeline,
    :func:`CompressEmbeddings` writes to any Beam file system (``gs://`` included)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; remove it or choose another --out")
    files.check_workdir(out, "--out")
    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; use npy or parquet")
    npz = export.npz_path(compressor)
    exported = export.load_numpy(npz)
    sizes = [int(s) for s in exported["sizes"]]
    ref = read_manifest(like) if like else None
    if ref is not None:
        if ref.compressor_sha256 != file_sha256(npz):
            raise ValueError(f"{like} was made with another compressor than {compressor}")
        size, precision = size or ref.size, precision or ref.precision
    if size is None or precision is None:
        raise ValueError("give --size and --precision (or --like CODES_DIR)")
    codes.check_precision(precision)
    if size not in sizes:
        raise ValueError(f"size {size}: {compressor} was trained for sizes {sizes}")
    shards = match(input_glob)
    t0 = time.perf_counter()
    try:
        if ref is not None and ref.precision == precision:
            cal = codes.Calibration.from_json(ref.calibration)
        else:
            cal = calibrate(npz, shards, size, precision, part, vector_column)
    except DataError as e:
        raise DataError(_one_line(e)) from None
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if verbose:
        print(f"compress_beam: {len(shards)} shards -> {out} ({size}-d {precision})", flush=True)
    try:
        with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as p:
            done = (
                p
                | "Shards" >> beam.Create(list(enumerate(shards)))
                | "CompressEmbeddings"
                >> CompressEmbeddings(
                    str(npz),
                    size,
                    precision,
                    cal.to_json(),
                    str(work),
                    part=part,
                    fmt=fmt,
                    vector_column=vector_column,
                )  # fmt: skip
            )
            _ = done | "Record" >> beam.Map(_record, str(work))
        shard_list = [json.loads(f.read_text()) for f in sorted(work.glob("done-*.json"))]
    except Exception as e:  # noqa: BLE001  (a runner wraps the worker's error)
        shutil.rmtree(work, ignore_errors=True)
        raise DataError(_one_line(e)) from None
    for f in work.glob("done-*.json"):
        f.unlink()
    if len(shard_list) != len(shards):
        shutil.rmtree(work, ignore_errors=True)
        raise DataError(f"{len(shard_list)} of {len(shards)} shards finished; rerun")
    manifest = Manifest(
        compressor_sha256=file_sha256(npz),
        encoder=str(exported.get("encoder", "")),
        input_dim=export.input_dim(exported),  # every shard was checked against it
        size=int(size),
        precision=precision,
        calibration=cal.to_json(),
        rows=int(sum(s["rows"] for s in shard_list)),
        bytes_per_vector=codes.bytes_per_vector(precision, size),
        part=part,
        source=input_glob,
        shards=[
            {"codes": Path(s["codes"]).name, "ids": Path(s["ids"]).name, "rows": s["rows"]}
            for s in shard_list
        ],
    )
    files.write_json(work / MANIFEST, dataclasses.asdict(manifest))
    work.rename(out)
    if verbose:
        el = time.perf_counter() - t0
        print(
            f"wrote {out}: {manifest.rows:,} rows in {el:.1f}s ({manifest.rows / el:,.0f} rows/s)"
        )
    return out


def _record(done: ShardDone, work: str) -> None:
    """One small file per finished shard (the launcher reads them after the run)."""
    with _open(f"{work}/done-{done.index:05d}.json", "wb") as f:
        f.write(json.dumps(dataclasses.asdict(done)).encode("utf-8"))
