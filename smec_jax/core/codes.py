"""Vector codes: the precision a compressed vector is stored at, and its calibration.

A code is a size-d prefix of a (nested) compressed unit vector, stored as:

* ``float32`` / ``float16``: the vector itself (4 d / 2 d bytes);
* ``int8``: one byte per dim, scalar-quantized with per-dim ranges from the corpus,
  ``code = floor(255 * clip((y - vmin) / vdiff, 0, 1))``, decoded as
  ``vmin + (code + 0.5) / 255 * vdiff``: exactly faiss's 8-bit ``ScalarQuantizer``
  (``QT_8bit``), so a faiss index given these ranges holds the same bytes (d bytes);
* ``int4`` / ``int2``: 16 / 4 levels per dim, cut at the per-dim corpus quantiles
  (equal-mass bins, the generalisation of the binary median), each level decoded as the
  corpus mean of its bin; packed two / four dims per byte, low bits first (d / 2, d / 4
  bytes);
* ``binary``: one bit per dim, ``y > threshold`` with per-dim corpus medians, packed
  little-endian as faiss's binary indexes pack them (ceil(d / 8) bytes); scored by Hamming
  distance (equivalently the inner product of the +-1 vectors);
* ``binary_itq``: binary codes of ``(y - center) R``, with R an orthogonal rotation fitted
  on the corpus by iterative quantization (ITQ: Gong and Lazebnik 2011), so that the signs
  lose less; the rotation mixes the d dims, so the binary codes of two sizes are not
  prefixes of each other (the float vectors stay nested).

:class:`Calibration` holds the ranges or thresholds; it is computed once on the corpus and
stored (JSON, exact float32 values) with the codes, so indexing, querying and serving use
the same codes. Dims with no range on the corpus (all-MiniLM-L6-v2 has three dims that are
zero in every document) get a tiny positive range instead of a division by zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

PRECISIONS = ("float32", "float16", "int8", "int4", "int2", "binary", "binary_itq")
LEVELS = {"int4": 16, "int2": 4}
BINARY = ("binary", "binary_itq")
BITS = {"float32": 32, "float16": 16, "int8": 8, "int4": 4, "int2": 2, "binary": 1, "binary_itq": 1}
MIN_RANGE = 1e-12


def bytes_per_vector(precision: str, dim: int) -> int:
    """Bytes one code of ``dim`` dims takes at ``precision``."""
    check_precision(precision)
    return -(-dim * BITS[precision] // 8)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How codes of one size and precision are made.

    Attributes:
      precision: one of :data:`PRECISIONS`. dim: the code's size d.
      vmin, vdiff: (d,) float32 per-dim range (int8). threshold: (d,) float32 (binary), or
        (d, L - 1) bin edges (int4, int2). centroids: (d, L) decoded values (int4, int2).
      center, rotation: (d,) and (d, d) (binary_itq).
    """

    precision: str
    dim: int
    vmin: np.ndarray | None = None
    vdiff: np.ndarray | None = None
    threshold: np.ndarray | None = None
    centroids: np.ndarray | None = None
    center: np.ndarray | None = None
    rotation: np.ndarray | None = None

    def to_json(self) -> dict:
        out = {"precision": self.precision, "dim": self.dim}
        for k in ARRAYS:
            v = getattr(self, k)
            if v is not None:
                out[k] = np.asarray(v, np.float32).tolist()  # exact for float32 values
        return out

    @classmethod
    def from_json(cls, doc: dict) -> Calibration:
        arrays = {k: np.asarray(doc[k], np.float32) for k in ARRAYS if k in doc}
        return cls(precision=doc["precision"], dim=int(doc["dim"]), **arrays)

    def __eq__(self, other) -> bool:
        return isinstance(other, Calibration) and self.to_json() == other.to_json()

    __hash__ = None


ARRAYS = ("vmin", "vdiff", "threshold", "centroids", "center", "rotation")


class Calibrator:
    """Streams corpus vectors (chunks of (n, d) float32) into a :class:`Calibration`.

    int8 ranges are exact over every row; the other quantized codes are fitted on at most
    ``sample`` evenly spaced rows (the whole corpus when it is smaller).
    """

    def __init__(self, precision: str, dim: int, n_rows: int, sample: int = 200_000):
        check_precision(precision)
        self.precision, self.dim, self.n_rows = precision, dim, n_rows
        self._min = np.full((dim,), np.inf, np.float32)
        self._max = np.full((dim,), -np.inf, np.float32)
        stride = max(1, -(-n_rows // sample))
        self._keep = lambda start, n: np.arange(start, start + n) % stride == 0
        self._sampled: list[np.ndarray] = []

    def add(self, y_nd: np.ndarray, start: int) -> None:
        """Adds rows ``start .. start + len(y_nd)`` of the corpus."""
        y = np.asarray(y_nd, np.float32)
        if self.precision == "int8":
            np.minimum(self._min, y.min(axis=0), out=self._min)
            np.maximum(self._max, y.max(axis=0), out=self._max)
        elif self.precision not in ("float32", "float16"):
            self._sampled.append(y[self._keep(start, len(y))])

    def finish(self) -> Calibration:
        if self.precision == "int8":
            vdiff = np.maximum(self._max - self._min, np.float32(MIN_RANGE))
            return Calibration("int8", self.dim, vmin=self._min.copy(), vdiff=vdiff)
        if self.precision == "float32" or self.precision == "float16":
            return Calibration(self.precision, self.dim)
        y = np.concatenate(self._sampled)
        if self.precision == "binary":
            med = np.median(y, axis=0).astype(np.float32)
            return Calibration("binary", self.dim, threshold=med)
        if self.precision == "binary_itq":
            return _fit_itq(y)
        return _fit_quantile_levels(y, self.precision)


def _fit_quantile_levels(y: np.ndarray, precision: str) -> Calibration:
    """Per-dim equal-mass bins (edges at the i / L quantiles) and each bin's mean."""
    n_levels = LEVELS[precision]
    edges = np.quantile(y, np.arange(1, n_levels) / n_levels, axis=0).T.astype(np.float32)
    level = _levels(y, edges)
    cent = np.zeros((y.shape[1], n_levels), np.float32)
    for lv in range(n_levels):
        sel = level == lv
        count = sel.sum(axis=0)
        total = np.where(sel, y, 0.0).sum(axis=0)
        # an empty bin (a dim with ties) decodes to its nearest edge
        nearest = edges[:, min(lv, n_levels - 2)]
        cent[:, lv] = np.where(count > 0, total / np.maximum(count, 1), nearest)
    return Calibration(precision, y.shape[1], threshold=edges, centroids=cent)


def _fit_itq(y: np.ndarray, iters: int = 50, seed: int = 0) -> Calibration:
    """Iterative quantization: the rotation R minimising ||sign(V R) - V R|| (V centred)."""
    center = y.mean(axis=0).astype(np.float32)
    v = (y - center).astype(np.float64)
    d = y.shape[1]
    r, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    for _ in range(iters):
        b = np.sign(v @ r)
        b[b == 0] = 1
        u, _, wt = np.linalg.svd(b.T @ v)
        r = (u @ wt).T
    return Calibration("binary_itq", d, center=center, rotation=r.astype(np.float32))


def _levels(y: np.ndarray, edges_dl: np.ndarray) -> np.ndarray:
    """(n, d) level of each value: how many of its dim's edges it exceeds."""
    return (y[:, :, None] > edges_dl[None, :, :]).sum(axis=2).astype(np.uint8)


def _pack(levels: np.ndarray, bits: int) -> np.ndarray:
    per = 8 // bits
    n, d = levels.shape
    padded = np.zeros((n, -(-d // per) * per), np.uint8)
    padded[:, :d] = levels
    out = np.zeros((n, padded.shape[1] // per), np.uint8)
    for j in range(per):
        out |= padded[:, j::per] << (bits * j)
    return out


def _unpack(packed: np.ndarray, bits: int, d: int) -> np.ndarray:
    per, mask = 8 // bits, (1 << bits) - 1
    out = np.zeros((packed.shape[0], packed.shape[1] * per), np.uint8)
    for j in range(per):
        out[:, j::per] = (packed >> (bits * j)) & mask
    return out[:, :d]


def calibrate(y_nd: np.ndarray, precision: str) -> Calibration:
    """The calibration of ``precision`` codes for corpus vectors ``y_nd`` (n, d)."""
    cal = Calibrator(precision, y_nd.shape[1], len(y_nd))
    cal.add(y_nd, 0)
    return cal.finish()


def encode(y_nd: np.ndarray, cal: Calibration) -> np.ndarray:
    """(n, d) float vectors -> codes: float32 / float16 (n, d), uint8 (n, d) for int8,
    uint8 (n, ceil(d / 8)) packed bits for binary."""
    y = np.asarray(y_nd, np.float32)
    if y.ndim != 2 or y.shape[1] != cal.dim:
        raise ValueError(f"vectors of shape {y.shape} for {cal.dim}-d {cal.precision} codes")
    if cal.precision == "float32":
        return y
    if cal.precision == "float16":
        return y.astype(np.float16)
    if cal.precision == "int8":
        x = np.clip((y - cal.vmin) / cal.vdiff, 0.0, 1.0)
        return np.minimum(np.floor(x * np.float32(255.0)), 255).astype(np.uint8)
    if cal.precision in LEVELS:
        return _pack(_levels(y, cal.threshold), codes_bits(cal.precision))
    if cal.precision == "binary_itq":
        return np.packbits((y - cal.center) @ cal.rotation > 0, axis=1, bitorder="little")
    return np.packbits(y > cal.threshold, axis=1, bitorder="little")


def codes_bits(precision: str) -> int:
    return BITS[precision]


def decode(codes: np.ndarray, cal: Calibration) -> np.ndarray:
    """Codes -> (n, d) float32 vectors as the index scores them: the vector (float), the
    reconstruction (int8, int4, int2), or the +-1 vector (binary, binary_itq)."""
    if cal.precision in ("float32", "float16"):
        return np.asarray(codes, np.float32)
    if cal.precision == "int8":
        return (
            cal.vmin + (codes.astype(np.float32) + np.float32(0.5)) / np.float32(255.0) * cal.vdiff
        )
    if cal.precision in LEVELS:
        lv = _unpack(codes, BITS[cal.precision], cal.dim)
        return cal.centroids[np.arange(cal.dim)[None, :], lv]
    bits = np.unpackbits(codes, axis=1, count=cal.dim, bitorder="little")
    return bits.astype(np.float32) * 2.0 - 1.0


def query_vectors(q_nd: np.ndarray, cal: Calibration) -> np.ndarray:
    """Float queries in the space of :func:`decode`'s documents, so that
    ``query_vectors(q, cal) @ decode(codes, cal).T`` is the asymmetric score (a float query
    against coded documents): ``q`` itself, or ``(q - center) R`` for ``binary_itq``."""
    q = np.asarray(q_nd, np.float32)
    if cal.precision == "binary_itq":
        return (q - cal.center) @ cal.rotation
    return q


def code_dtype_and_width(cal: Calibration) -> tuple[np.dtype, int]:
    """Dtype and row width of the codes array."""
    if cal.precision == "float32":
        return np.dtype(np.float32), cal.dim
    if cal.precision == "float16":
        return np.dtype(np.float16), cal.dim
    return np.dtype(np.uint8), bytes_per_vector(cal.precision, cal.dim)


def chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)
