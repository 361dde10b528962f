"""The SMRL schedule: validated ladders, nested kept sets, prefix export order."""

import numpy as np
import pytest

from smec_jax.core import ads, smrl


def test_ladder_validation():
    assert smrl.sizes_for((384, 128, 32), 384) == (384, 128, 32)
    assert smrl.sizes_for((256, 64), 384) == (384, 256, 64)
    for bad, msg in [
        ((384, 384, 32), "strictly decreasing"),
        ((128, 256), "strictly decreasing"),
        ((512, 64), "within 1..384"),
        ((), "empty"),
        ((64, 0), "within"),
    ]:
        with pytest.raises(ValueError, match=msg):
            smrl.sizes_for(bad, 384)


def _random_logits(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return {ads.stage_name(t): rng.normal(size=sizes[t - 1]) for t in range(1, len(sizes))}


def test_kept_sets_are_nested_and_sized():
    sizes = (32, 16, 8, 4)
    for logits in (None, _random_logits(sizes)):
        sets = smrl.kept_sets(sizes, logits, 3)
        assert [len(s) for s in sets] == list(sizes)
        for big, small in zip(sets, sets[1:], strict=False):
            assert set(small) <= set(big)
    prefix = smrl.kept_sets(sizes, None, 3)
    np.testing.assert_array_equal(prefix[2], np.arange(8))


def test_stage_trains_only_dims_kept_so_far():
    sizes = (32, 16, 8, 4)
    logits = _random_logits(sizes, 1)
    st = smrl.make_stage(3, sizes, logits)
    sets = smrl.kept_sets(sizes, logits, 2)
    np.testing.assert_array_equal(st.kept, sets[2])
    assert (st.d_prev, st.d_next) == (8, 4)
    assert st.trainable(32).sum() == 8 and st.trainable(32)[sets[2]].all()
    assert [s for s, _ in st.earlier] == [32, 16]


def test_nested_order_makes_every_size_a_prefix():
    sizes = (32, 16, 8, 4)
    sets = smrl.kept_sets(sizes, _random_logits(sizes, 2), 3)
    order = smrl.nested_order(sets)
    assert sorted(order) == list(range(32))
    for s in sets:
        assert set(order[: len(s)]) == set(s)
