"""The method registry: every registered method fits on the tiny config and compresses at
every ladder size; names, groups and overrides are checked where they are declared."""

import jax
import numpy as np
import pytest

from smec_jax import methods
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.methods import registry
from tests.helpers import tiny_config

# The report's row order (it is also the order of results.json, so changing it changes
# every committed report).
REPORT_ORDER = [
    "truncate",
    "pca",
    "doc_prior",
    "search_adaptor",
    "matryoshka_adaptor",
    "matryoshka_adaptor_2p",
    "csr",
    "smec",
    "smec_binary",
    "smec_int8",
    "smec_int2",
    "smec_distill",
    "smec_pseudo",
    "score_pca",
    "score_svd",
    "matryoshka_adaptor_unsup",
    "smec_unsup",
    "smec_unsup_distill",
    "distill",
    "distill_pseudo",
    "distill_docs",
    "distill_pseudo_log",
    "distill_pseudo_codes",
    "distill_pq",
    "distill_pq_docs",
    "mrl",
    "mrl_smrl",
    "mrl_ads",
    "mrl_sxbm",
]


def test_names_are_in_report_order_and_grouped():
    assert methods.names() == REPORT_ORDER
    assert methods.names(group="baseline") == ["truncate", "pca"]
    assert methods.names(group="label_free")[:2] == ["score_pca", "score_svd"]
    closed_form = {"score_pca", "score_svd"}  # fitted once, like the baselines
    for name in methods.names():
        m = methods.get(name)
        assert m.group in methods.GROUPS and m.name == name
        assert m.seeded == (m.group not in ("baseline", "control") and name not in closed_form)
    with pytest.raises(ValueError, match="unknown group"):
        methods.names(group="peers")


def test_a_duplicate_name_or_an_unknown_group_is_refused():
    m = methods.get("pca")
    with pytest.raises(ValueError, match="'pca' is registered twice"):
        methods.register(m)
    with pytest.raises(ValueError, match="group 'magic'"):
        methods.register(registry.Method("new", "magic", False, m.fit))
    assert "new" not in methods.names()


def test_every_override_names_a_config_field_and_is_applied_to_a_copy():
    cfg = tiny_config()
    before = cfg.to_json(sort_keys=True)
    for name in methods.names():
        resolved = methods.get(name).resolve(cfg)  # an unknown field raises KeyError
        for dotted, value in methods.get(name).overrides.items():
            node = resolved
            for part in dotted.split("."):
                node = node[part]
            assert node == value, (name, dotted)
        assert resolved.method == name
    assert cfg.to_json(sort_keys=True) == before
    with pytest.raises(KeyError, match="'train.lerning_rate' names no config field"):
        methods.apply_overrides(cfg, {"train.lerning_rate": 1.0})


@pytest.mark.slow
@pytest.mark.parametrize("name", REPORT_ORDER)
def test_every_registered_method_fits_and_compresses_at_every_size(name, tmp_path, synthetic):
    """Fit the method (a training one resumable in its own workdir), then: unit vectors of
    each ladder size (unit vectors unless the method scores by inner products), a validation
    score for every size a supervised trained method reports, a test score in (0, 1], and,
    for every compressor that says it nests, each size equal to the normalised prefix of the
    largest (documents and queries)."""
    cfg = tiny_config()
    x = synthetic.queries[:7]
    evaluator = Evaluator(synthetic)
    fitted = methods.get(name).fit(cfg, synthetic, tmp_path / name, verbose=False)
    if getattr(fitted.compressor, "product_codes", False):  # size = bytes: tests/test_pq.py
        assert fitted.compressor.sizes == tuple(sorted(cfg.pq.bytes, reverse=True))
        for m in fitted.compressor.sizes:
            assert fitted.compressor.encode(x, m).shape == (7, m), name
            assert 0.0 < evaluator.mean_ndcg(fitted.compressor, m) <= 1.0, (name, m)
        return
    for d in cfg.ladder:
        y = np.asarray(fitted.compressor.compress(jax.numpy.asarray(x), d))
        if name == "csr":  # d active latents of the sparse autoencoder's hidden layer
            assert y.shape == (7, 4 * synthetic.dim) and np.all((y != 0).sum(1) <= d)
        else:
            expect = synthetic.dim if name == "doc_prior" else d  # the control: no compression
            assert y.shape == (7, expect), (name, d)
        if fitted.compressor.metric == "cosine":
            np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5, err_msg=name)
        assert 0.0 < evaluator.mean_ndcg(fitted.compressor, d) <= 1.0, (name, d)
    comp = fitted.compressor
    if comp.nests:  # every size is the normalised prefix of the largest, for both routes
        for route in (comp.compress, comp.compress_queries):
            full = np.asarray(route(jax.numpy.asarray(x), cfg.ladder[0]))
            for d in cfg.ladder[1:]:
                prefix = full[:, :d] / np.linalg.norm(full[:, :d], axis=1, keepdims=True)
                got = np.asarray(route(jax.numpy.asarray(x), d))
                np.testing.assert_allclose(got, prefix, atol=1e-5, err_msg=f"{name} {d}")
    if methods.get(name).seeded and methods.get(name).group != "label_free":
        assert {str(d) for d in cfg.ladder[1:]} <= set(fitted.val_ndcg), name
