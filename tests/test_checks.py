"""The config checks cannot drift from the defaults: every field of configs/default.py is
checked, a rule names only real fields, and a wrong value of any field is refused in one
line naming it."""

import ml_collections
import pytest

from configs import default, tiny
from smec_jax import methods
from smec_jax.training import checks


class _Alien:
    """A value of no config type."""

    def __repr__(self):
        return "<alien>"


def _loose(cfg) -> ml_collections.ConfigDict:
    """A copy whose fields take any value (ConfigDict would refuse a wrong type itself)."""
    return ml_collections.ConfigDict(cfg.to_dict(), type_safe=False)


def _set(cfg, dotted: str, value) -> None:
    *path, leaf = dotted.split(".")
    node = cfg
    for part in path:
        node = node[part]
    node[leaf] = value


def test_every_default_field_has_a_check_and_every_rule_a_field():
    fields = checks.fields(default.get_config())
    table = checks.schema()
    assert list(table) == list(fields)
    rules = dict(checks.RULES)
    for name, (block, block_rules) in checks.BLOCKS.items():
        assert name in default.get_config(), name
        assert set(checks.fields(block(), name + ".")) <= set(fields)
        rules.update(block_rules)
    assert not set(rules) - set(fields), set(rules) - set(fields)


def test_method_families_declare_their_own_blocks():
    assert set(checks.config_blocks()) == {"adaptor", "csr", "pq"}
    assert "csr" not in {f.split(".")[0] for f in checks.RULES}


@pytest.mark.parametrize("field", list(checks.fields(default.get_config())))
def test_a_wrong_type_in_any_field_is_refused_naming_it(field):
    cfg = _loose(tiny.get_config())
    methods.validate(cfg)  # the untouched copy passes
    _set(cfg, field, _Alien())
    with pytest.raises(ValueError, match=rf"^--config\.{field} "):
        methods.validate(cfg)


@pytest.mark.parametrize(
    "field, value",
    [("csr.dead_steps", 0), ("csr.aux_weight", -1.0), ("csr.aux_k", -1), ("adaptor.topk", 0)],
)
def test_block_rules_check_ranges(field, value):
    cfg = _loose(tiny.get_config())
    _set(cfg, field, value)
    with pytest.raises(ValueError, match=rf"^--config\.{field} must be >"):
        methods.validate(cfg)
