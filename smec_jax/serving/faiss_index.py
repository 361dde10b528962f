"""faiss indexes built from codes folders (``launch.compress``), searched like the JAX path.

Index kinds (``kind``), each for the codes it can hold without re-encoding them:

* ``flat``: ``IndexFlatIP`` on float32/float16 codes (exact inner product);
* ``sq8``: ``IndexScalarQuantizer`` 8-bit on int8 codes, with *our* calibration set as its
  trained ranges and our codes copied in (``codes.py`` encodes exactly as faiss's QT_8bit,
  so the index holds the same bytes); searched with float queries (asymmetric);
* ``binary``: ``IndexBinaryFlat`` on packed binary codes (Hamming distance);
* ``hnsw``: ``IndexHNSWFlat`` (inner product) on float codes; ``M``, ``ef_construction``
  and ``ef_search`` from the index config;
* ``scan`` (ours, no faiss: faiss has no 2-bit codes, its 4-bit codes are uniform, not our
  quantile bins, and its binary indexes score no float query): the packed int4 / int2 /
  binary / ITQ binary codes themselves, scored exactly by decoding them chunk by chunk
  (:class:`PackedScan`), with coded queries (symmetric) or float ones (asymmetric; rotated
  into the ITQ codes' space first); memory holds the packed codes.

* ``ivf_flat`` / ``ivf_sq8`` / ``ivf_pq``: inverted-file indexes for corpora larger than
  memory, built block by block and merged on disk (:mod:`smec_jax.serving.ivf`).

An index folder holds ``index.faiss`` (``codes.npy`` for ``scan``; plus ``lists.ivfdata``
for the IVF kinds) and ``index.json`` (the kind, its parameters and the codes' manifest):
searching it with query codes made with other settings is refused.
Scores are inner products (float and int8) or ``d - 2 * hamming`` (binary), so higher is
better everywhere.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from smec_jax import files
from smec_jax.core import codes
from smec_jax.datasets.data import DataError
from smec_jax.serving import codes_folder

FLOATS = ("float32", "float16")
KINDS = {
    "flat": FLOATS,
    "sq8": ("int8",),
    "binary": ("binary",),
    "hnsw": FLOATS,
    "scan": ("int4", "int2", "binary", "binary_itq"),
    # built on disk, block by block (smec_jax/serving/ivf.py)
    "ivf_flat": FLOATS,
    "ivf_sq8": ("int8",),
    "ivf_pq": FLOATS,
}
IVF = ("ivf_flat", "ivf_sq8", "ivf_pq")
LISTS = "lists.ivfdata"  # an IVF index's inverted lists, next to its index.faiss


class PackedScan:
    """Exact inner-product search over packed int4 / int2 / binary codes: each chunk of ``chunk``
    documents is decoded (:func:`codes.decode`) and scored by one matmul, and the best ``k``
    are kept; only the packed codes stay in memory. The faiss-like face the index needs:
    ``ntotal`` and ``search(queries, k) -> (scores, rows)``."""

    def __init__(self, packed: np.ndarray, cal: codes.Calibration, chunk: int = 65536):
        self.packed, self.cal, self.chunk = np.ascontiguousarray(packed, np.uint8), cal, chunk

    @property
    def ntotal(self) -> int:
        return len(self.packed)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) (nq, k), best first, ties by row; -1 rows (score -inf) past the
        corpus. Each chunk of ``chunk`` documents is decoded once and scored against the
        queries in blocks of 256."""
        q = np.asarray(q, np.float32)
        best_s = np.zeros((len(q), 0), np.float32)
        best_r = np.zeros((len(q), 0), np.int64)
        for start in range(0, self.ntotal, self.chunk):
            docs = codes.decode(self.packed[start : start + self.chunk], self.cal)
            blocks = [top_k_by_row(q[i : i + 256] @ docs.T, k) for i in range(0, len(q), 256)]
            s = np.concatenate([best_s, np.concatenate([b[0] for b in blocks])], axis=1)
            r = np.concatenate([best_r, np.concatenate([b[1] for b in blocks]) + start], axis=1)
            # stable: equal scores keep their order, which is by row (kept rows are sorted
            # by score then row, and all precede this chunk's rows)
            order = np.argsort(-s, axis=1, kind="stable")[:, :k]
            best_s, best_r = np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_r = np.full((len(q), k), -1, np.int64)
        out_s[:, : best_s.shape[1]], out_r[:, : best_r.shape[1]] = best_s, best_r
        return out_s, out_r


def top_k_by_row(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` largest scores of ``s`` (nq, c) and their columns, ascending by
    column (not sorted by score); among scores equal to the k-th largest, the lowest
    columns. A partition, not a sort: linear in c."""
    if s.shape[1] <= k:
        return s, np.broadcast_to(np.arange(s.shape[1]), s.shape)
    kth = np.partition(s, s.shape[1] - k, axis=1)[:, s.shape[1] - k][:, None]
    above, tied = s > kth, s == kth
    need = k - above.sum(axis=1, keepdims=True)
    take = above | (tied & (np.cumsum(tied, axis=1) <= need))
    cols = np.nonzero(take)[1].reshape(len(s), k)
    return np.take_along_axis(s, cols, 1), cols


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise ValueError("faiss is not installed: pip install faiss-cpu") from None
    return faiss


@dataclasses.dataclass
class Index:
    """A faiss index over one codes folder."""

    index: object
    kind: str
    manifest: codes_folder.Manifest
    params: dict

    def search(
        self, query_codes: np.ndarray, query_manifest: codes_folder.Manifest, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) best first for query codes (checked against the index's codes:
        same compressor and size; float queries against int8 codes score asymmetrically);
        -1 rows where fewer than k docs exist."""
        codes_folder.check_compatible(self.manifest, query_manifest, "the index", "the query codes")
        qcal = codes.Calibration.from_json(query_manifest.calibration)
        if self.kind == "binary":
            if query_manifest.precision != "binary":
                raise DataError("a binary index is searched with binary query codes")
            dist, rows = self.index.search(np.ascontiguousarray(query_codes, np.uint8), k)
            return (self.manifest.size - 2 * dist).astype(np.float32), rows
        q = np.ascontiguousarray(codes.decode(np.asarray(query_codes), qcal), np.float32)
        if self.manifest.precision == "binary_itq" and query_manifest.precision in FLOATS:
            cal = codes.Calibration.from_json(self.manifest.calibration)
            q = (q - cal.center) @ cal.rotation  # the ITQ codes' rotated space (asymmetric)
        return self.index.search(q, k)


def search_tie_complete(
    index: Index, query_codes: np.ndarray, query_manifest, k: int, tie_rank: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) (nq, k) of an :class:`Index` as the Evaluator ranks:
    :func:`tie_complete` over its search."""
    return tie_complete(
        lambda width: index.search(query_codes, query_manifest, width),
        index.index.ntotal,
        k,
        tie_rank,
    )


def tie_complete(search, n: int, k: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) (nq, k) as the Evaluator ranks: score descending, then ``tie_rank``
    ascending (:func:`smec_jax.core.retrieval.trec_tie_order`'s ranks: doc id descending).

    ``search(width) -> (scores, rows)`` is a faiss-like search over ``n`` documents. faiss
    keeps its own subset of the documents tied at the k-th score; here the search is widened
    (doubling the width) until, for every query, the last hit scores below its k-th (or all
    ``n`` are returned), so every tied document is seen before the cut."""
    width = min(k, n)
    while True:
        scores, rows = search(width)
        if width >= n:
            break
        kth = scores[:, min(k, width) - 1]
        if not ((rows[:, -1] >= 0) & (scores[:, -1] >= kth)).any():
            break
        width = min(n, 2 * width)
    valid = rows >= 0
    rank = np.where(valid, tie_rank[np.where(valid, rows, 0)], np.iinfo(np.int64).max)
    order = np.lexsort((rank, -np.where(valid, scores, -np.inf)), axis=1)[:, :k]
    out_s = np.full((len(rows), k), -np.inf, np.float32)
    out_r = np.full((len(rows), k), -1, np.int64)
    take_s, take_r = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    out_s[:, : take_s.shape[1]], out_r[:, : take_r.shape[1]] = take_s, take_r
    return out_s, out_r


def factory_index(x: np.ndarray, spec: str, seed: int = 0, opq_iterations: int | None = None):
    """A faiss ``index_factory`` index of ``spec`` (e.g. ``"PQ32"``, ``"OPQ16,PQ16"``,
    ``"RaBitQ"``) over the rows of ``x``, inner-product metric, trained on ``x`` itself
    (codebooks on the corpus they code) and holding it. Its bytes per vector:
    ``index.sa_code_size()``; shared state (codebooks, rotations) is not counted.
    ``opq_iterations``: OPQ's alternating iterations (None: faiss's default, 50)."""
    faiss = faiss_module()
    x = np.ascontiguousarray(x, np.float32)
    index = faiss.index_factory(x.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    for sub in _sub_indexes(faiss, index):
        pq = getattr(sub, "pq", None)
        if isinstance(pq, faiss.ProductQuantizer):  # quiet, seeded k-means; a small corpus is fine
            pq.cp.seed, pq.cp.verbose, pq.cp.min_points_per_centroid = seed, False, 1
        if opq_iterations is not None and isinstance(sub, faiss.OPQMatrix):
            sub.niter = opq_iterations
        if hasattr(sub, "do_polysemous_training"):  # Hamming pre-filtering: unused here and
            sub.do_polysemous_training = False  # 50x the codebooks' training time
    index.train(x)
    index.add(x)
    return index


def _sub_indexes(faiss, index):
    yield index
    if isinstance(index, faiss.IndexPreTransform):
        yield faiss.downcast_index(index.index)
        for i in range(index.chain.size()):
            yield faiss.downcast_VectorTransform(index.chain.at(i))


def build(
    codes_dir: str | Path, kind: str, *, m: int = 32, ef_construction: int = 80, ef_search: int = 64
) -> Index:
    """The faiss index (or :class:`PackedScan`) of ``kind`` over the codes in ``codes_dir``,
    in memory (the IVF kinds are built on disk: :func:`smec_jax.serving.ivf.build`)."""
    if kind in IVF:
        raise ValueError(f"{kind} indexes are built on disk: smec_jax.serving.ivf.build")
    arr, _, man = codes_folder.load_codes(codes_dir)
    check_kind(kind, man, codes_dir)
    cal = codes.Calibration.from_json(man.calibration)
    if kind == "scan":
        return Index(index=PackedScan(np.asarray(arr), cal), kind=kind, manifest=man, params={})
    params = {}
    if kind == "hnsw":
        params = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
    index = new_index(kind, man.size, cal, **params)
    add_codes(index, kind, arr)
    return Index(index=index, kind=kind, manifest=man, params=params)


def check_kind(kind: str, man: codes_folder.Manifest, folder) -> None:
    """Refuses an unknown index kind, or codes the kind cannot hold (one line)."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
    if man.precision not in KINDS[kind]:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ValueError(
            f"{article} {kind} index holds {'/'.join(KINDS[kind])} codes but {folder} holds "
            f"{man.precision} codes; compress with --precision {KINDS[kind][0]}"
        )


def new_index(kind: str, d: int, cal: codes.Calibration, **params):
    """An empty faiss index of ``kind`` (not ``scan``) for ``d``-d codes of calibration
    ``cal``: ready for :func:`add_codes` (the 8-bit scalar quantizer takes ``cal``'s ranges as
    its trained state, so faiss stores exactly our int8 codes)."""
    faiss = faiss_module()
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
        return index
    if kind == "sq8":
        index = faiss.IndexScalarQuantizer(
            d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        trained = np.concatenate([cal.vmin, cal.vdiff]).astype(np.float32)
        faiss.copy_array_to_vector(trained, index.sq.trained)
        index.is_trained = True
        return index
    if kind == "binary":
        return faiss.IndexBinaryFlat(d)
    raise ValueError(f"unknown faiss index kind {kind!r}; use one of flat, hnsw, sq8, binary")


def checked_ids(ids, n: int) -> np.ndarray:
    """``ids`` as the int64 faiss ids of ``n`` vectors, or one line saying what is wrong."""
    ids = np.asarray(ids)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"ids: expected {n} integers (one per document), got {ids.dtype} {ids.shape}; "
            "faiss ids are int64"
        )
    return ids.astype(np.int64)


def add_codes(index, kind: str, arr: np.ndarray, ids: np.ndarray | None = None) -> None:
    """Adds codes (float rows, int8 codes, packed bits) to an index of :func:`new_index`,
    or to its ``IndexIDMap`` / ``IndexBinaryIDMap`` with int64 ``ids``."""
    if kind == "sq8":
        args = (np.ascontiguousarray(arr, np.uint8),)
        index.add_sa_codes(*args, *(() if ids is None else (np.asarray(ids, np.int64),)))
        return
    x = np.ascontiguousarray(arr, np.uint8 if kind == "binary" else np.float32)
    if ids is None:
        index.add(x)
    else:
        index.add_with_ids(x, np.asarray(ids, np.int64))


def save(index: Index, out: str | Path) -> Path:
    """Writes ``out/index.faiss`` (``codes.npy``) and ``out/index.json`` (into a temp
    folder, then renamed)."""
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; remove it or choose another --out")
    files.check_workdir(out, "--out")
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    if index.kind == "scan":
        np.save(tmp / "codes.npy", index.index.packed)
    else:
        faiss = faiss_module()
        write = faiss.write_index_binary if index.kind == "binary" else faiss.write_index
        write(index.index, str(tmp / "index.faiss"))
    meta = {
        "kind": index.kind,
        "params": index.params,
        "manifest": dataclasses.asdict(index.manifest),
    }
    files.write_json(tmp / "index.json", meta)
    tmp.rename(out)
    return out


def load(folder: str | Path) -> Index:
    folder = Path(folder)
    if not (folder / "index.json").is_file():
        raise DataError(f"{folder}: no index.json; build the index with `python -m launch.index`")
    meta = json.loads((folder / "index.json").read_text())
    man = codes_folder.Manifest(**meta["manifest"])
    if meta["kind"] == "scan":
        cal = codes.Calibration.from_json(man.calibration)
        return Index(PackedScan(np.load(folder / "codes.npy"), cal), "scan", man, meta["params"])
    faiss = faiss_module()
    if meta["kind"] in IVF:  # the lists memory-mapped from this folder, wherever it moved
        moved = meta["lists"] != str(folder.resolve() / LISTS)
        flags = faiss.IO_FLAG_ONDISK_SAME_DIR if moved else 0  # (it prints the new path)
        index = faiss.read_index(str(folder / "index.faiss"), flags)
        index.nprobe = int(meta["params"]["nprobe"])
    else:
        read = faiss.read_index_binary if meta["kind"] == "binary" else faiss.read_index
        index = read(str(folder / "index.faiss"))
    if meta["kind"] == "hnsw":
        index.hnsw.efSearch = int(meta["params"]["ef_search"])
    return Index(
        index=index,
        kind=meta["kind"],
        manifest=codes_folder.Manifest(**meta["manifest"]),
        params=meta["params"],
    )


def disk_bytes(folder: str | Path) -> int:
    folder = Path(folder)
    if (folder / LISTS).exists():
        return (folder / "index.faiss").stat().st_size + (folder / LISTS).stat().st_size
    return (
        (folder / ("index.faiss" if (folder / "index.faiss").exists() else "codes.npy"))
        .stat()
        .st_size
    )


def ranked_by_trec_order(scores, rows, doc_ids, query_ids, k, exclude_self=False):
    """Each query's hits as doc ids: self hits dropped if asked, then sorted by score
    descending and doc id descending (trec_eval's order), the best ``k``."""
    out = []
    for qid, s_row, r_row in zip(query_ids, scores, rows, strict=True):
        hits = [(float(s), doc_ids[r]) for s, r in zip(s_row, r_row, strict=True) if r >= 0]
        if exclude_self:
            hits = [h for h in hits if h[1] != qid]
        hits.sort(key=lambda h: (h[0], h[1]), reverse=True)
        out.append([d for _, d in hits[:k]])
    return out
