"""Every compression method behind one interface, and the registry that names them.

  from smec_jax import methods
  fitted = methods.get("smec").fit(cfg, data, workdir)   # -> Fitted(compressor, val_ndcg)
  fitted.compressor.compress(x, 64)
  methods.names(group="ablation")                         # report order
  name, fitted, choice = methods.auto.fit_any(cfg, data, workdir)  # cfg.method may be "auto"

One file per family: :mod:`.closed_form` (truncate, pca), :mod:`.score_preserving`
(closed-form maps that keep query-document scores), :mod:`.doc_prior` (the
memorisation control), :mod:`.smec` (SMEC, label-free SMEC and the ablations),
:mod:`.matryoshka_adaptor` and :mod:`.search_adaptor` (peer methods), :mod:`.csr` (a sparse
code), :mod:`.pq` (learned product quantizers: faiss PQ codes trained by distillation). Importing this package
registers them all; the order below is the order within each report group.
"""

from smec_jax.methods.registry import (
    GROUPS,
    Fitted,
    Method,
    apply_overrides,
    get,
    names,
    register,
    validate,
)

# Import order is registration order, which is report order within a group (peers:
# Search-Adaptor then Matryoshka-Adaptor; label-free: Matryoshka-Adaptor then SMEC). Keep the
# sorter out of it; tests/test_methods.py checks the order.
# isort: off
from smec_jax.methods import closed_form  # noqa: E402
from smec_jax.methods import score_preserving  # noqa: E402
from smec_jax.methods import doc_prior  # noqa: E402
from smec_jax.methods import search_adaptor  # noqa: E402
from smec_jax.methods import matryoshka_adaptor  # noqa: E402
from smec_jax.methods import csr  # noqa: E402
from smec_jax.methods import smec  # noqa: E402
from smec_jax.methods import pq  # noqa: E402
from smec_jax.methods import auto  # noqa: E402  (chooses among the methods above)
# isort: on

__all__ = [
    "GROUPS",
    "Fitted",
    "auto",
    "Method",
    "apply_overrides",
    "get",
    "names",
    "register",
    "validate",
    "closed_form",
    "csr",
    "doc_prior",
    "matryoshka_adaptor",
    "score_preserving",
    "pq",
    "search_adaptor",
    "smec",
]
