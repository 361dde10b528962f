"""The compressor contract: what every fitted method hands to evaluation, export and serving.

A compressor maps original (n, D) embeddings to (n, dim) vectors at any of its sizes. The
one required member is :meth:`Compressor.compress`; the optional capabilities are members
with defaults, so callers read them instead of probing for them:

* :meth:`~Compressor.compress_queries`: the query route of an asymmetric map (default: the
  document route);
* :attr:`~Compressor.metric`: ``"cosine"`` (unit outputs, the default) or ``"ip"`` (raw
  inner products);
* :meth:`~Compressor.doc_bias`: a per-document score bonus (the memorisation control), or
  None;
* :meth:`~Compressor.bytes_per_vector`: the cost of one stored document at ``dim`` when it
  is not ``dim`` float32 values (a sparse code), or None;
* :attr:`~Compressor.nests`: every size is a prefix of the largest, so a short code can
  shortlist and a longer one rescore (a funnel);
* :attr:`~Compressor.sparse`: ``dim`` counts active latents of a sparse code, not output
  dimensions;
* :meth:`~Compressor.nested_map`: the exportable nested linear map (``compressor.npz``,
  ONNX, sentence-transformers), or None;
* :meth:`~Compressor.corpus_codes`: free codes fitted for the training corpus's documents
  (rows in corpus order), or None.

Every compressor class subclasses :class:`Compressor` and overrides what it has.
"""

from __future__ import annotations

from typing import Protocol

import jax
import numpy as np


class Compressor(Protocol):
    """A fitted compressor: original (n, D) embeddings -> (n, dim) vectors."""

    metric: str = "cosine"
    nests: bool = False
    sparse: bool = False

    def compress(self, x: jax.Array, dim: int) -> jax.Array:
        """Documents (and, for a symmetric map, queries) at size ``dim``."""
        ...

    def compress_queries(self, x: jax.Array, dim: int) -> jax.Array:
        """Queries at size ``dim``: the query map of an asymmetric compressor."""
        return self.compress(x, dim)

    def doc_bias(self) -> np.ndarray | None:
        """(n_docs,) bonus added to every score of each corpus row, or None."""
        return None

    def bytes_per_vector(self, dim: int) -> int | None:
        """Bytes one document costs at ``dim``, where that is not ``dim`` float32 values."""
        return None

    def nested_map(self) -> Compressor | None:
        """The nested linear map (a :class:`smec_jax.core.export.NestedCompressor`) that
        ``compressor.npz`` and the exports hold, or None."""
        return None

    def corpus_codes(self) -> np.ndarray | None:
        """(n_docs, N) free codes of the fitted corpus, in its row order, or None."""
        return None
