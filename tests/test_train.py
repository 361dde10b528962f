"""The SMEC trainer: frozen columns, determinism, resume, 1 vs 8 devices, NaN guard, config
errors, the nested export, and the launcher end to end (tiny synthetic config)."""

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from smec_jax import methods, parallel
from smec_jax.checkpoint import Checkpointer
from smec_jax.core import ads, export, model, smrl
from smec_jax.training import batches as batching
from smec_jax.training import objective, state, train
from tests.helpers import tiny_config


def train_method(method, data, cfg=None, workdir=None, **kwargs):
    """train.train on the tiny config with ``method``'s fields applied."""
    cfg = methods.get(method).resolve(cfg or tiny_config())
    return train.train(cfg, data, workdir, verbose=False, **kwargs)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("asymmetric", [False, True])
def test_frozen_columns_are_bit_identical_after_a_stage(synthetic, asymmetric):
    """In both maps of an asymmetric compressor too."""
    cfg = tiny_config()
    cfg.model.asymmetric = asymmetric
    sizes = smrl.sizes_for(cfg.ladder, synthetic.dim)
    mesh = parallel.data_mesh(1)
    tq = batching.resolve(synthetic, "train", synthetic.judged_queries("train"), 8)
    batches = batching.supervised_batches(
        synthetic, tq, batch_queries=16, n_pos=2, n_hard=3, seed=0
    )
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    st = jax.device_put(
        state.create_train_state(cfg, synthetic.dim, 32, sizes, synthetic.corpus), replicated
    )
    for t in (1, 2):
        stage = smrl.make_stage(t, sizes, jax.tree.map(np.asarray, st.ads))
        before = jax.tree.map(np.array, st.params)
        ads_before = jax.tree.map(np.array, st.ads)
        step = train.make_train_step(stage, cfg, 32, mesh)
        for _ in range(5):
            st, _ = step(st, parallel.put_batch(batches[int(st.step)], sharding))
        after = jax.tree.map(np.asarray, st.params)
        frozen = ~stage.trainable(32)
        assert frozen.sum() == 32 - stage.d_prev
        assert set(after) == ({"w", "b", "wq", "bq"} if asymmetric else {"w", "b"})
        for w, b in (("w", "b"), ("wq", "bq"))[: 1 + asymmetric]:
            np.testing.assert_array_equal(after[w][:, frozen], before[w][:, frozen])
            np.testing.assert_array_equal(after[b][frozen], before[b][frozen])
            assert not np.array_equal(after[w][:, ~frozen], before[w][:, ~frozen])
        for name in st.ads:  # only this stage's logits move
            same = np.array_equal(np.asarray(st.ads[name]), ads_before[name])
            assert same == (name != f"stage_{t}"), name
        st = jax.device_put(
            st.replace(stage=st.stage + 1, stage_step=st.stage_step * 0), replicated
        )


def test_same_seed_same_result(synthetic):
    a = train.train(tiny_config(), synthetic, verbose=False)
    b = train.train(tiny_config(), synthetic, verbose=False)
    for x, y in zip(leaves(a.compressor.params), leaves(b.compressor.params), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.compressor.order, b.compressor.order)


def test_interrupted_run_resumes_bit_identically(tmp_path, synthetic):
    cfg = tiny_config()
    straight = train.train(cfg, synthetic, tmp_path / "a", verbose=False)

    def kill_at_6(step):
        if step == 6:  # mid-stage 1; last checkpoint at step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, synthetic, tmp_path / "b", verbose=False, on_step=kill_at_6)
    assert Checkpointer(tmp_path / "b" / "checkpoints").latest_step() == 4
    resumed = train.train(cfg, synthetic, tmp_path / "b", verbose=False)
    for x, y in zip(
        leaves(straight.compressor.params), leaves(resumed.compressor.params), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(straight.compressor.order, resumed.compressor.order)


def test_one_and_eight_devices_agree(synthetic):
    cfg1, cfg8 = tiny_config(), tiny_config()
    cfg1.mesh.num_devices, cfg8.mesh.num_devices = 1, 8
    a = train.train(cfg1, synthetic, verbose=False)
    b = train.train(cfg8, synthetic, verbose=False)
    np.testing.assert_array_equal(a.compressor.order, b.compressor.order)
    for x, y in zip(leaves(a.compressor.params), leaves(b.compressor.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, synthetic):
    cfg = tiny_config()

    def kill_at_5(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, synthetic, tmp_path, verbose=False, on_step=kill_at_5)
    cfg.train.score_scale = 3e38  # finite, but the scaled scores overflow to inf
    (tmp_path / "run_config.json").unlink()  # resume under the new scale on purpose
    with pytest.raises(
        train.NonFiniteLoss, match=r"non-finite loss at step 4 .*checkpoint \(step 4\) is kept"
    ):
        train.train(cfg, synthetic, tmp_path, verbose=False)
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 4


def test_export_prefixes_equal_the_trained_selection_path(tmp_path, synthetic):
    res = train.train(tiny_config(), synthetic, verbose=False)
    comp = res.compressor
    path = export.save(comp, tmp_path / "c.npz")
    exported = export.load_numpy(path)
    x = synthetic.queries[:20]
    full = np.asarray(model.apply(jax.tree.map(np.asarray, comp.params), x))
    for size, s in zip(comp.sizes, res.sets, strict=True):
        # the size-d prefix of the exported map is the selection S_t (as a set of dims) ...
        assert set(comp.order[:size]) == set(s)
        # ... so it gives the same cosines as the trained selection path ...
        sel = full[:, s] / np.linalg.norm(full[:, s], axis=1, keepdims=True)
        pre = export.apply_exported(exported, x, size)
        np.testing.assert_allclose(pre @ pre.T, sel @ sel.T, atol=1e-5)
        # ... and numpy alone gives what the JAX compressor gives.
        np.testing.assert_allclose(pre, np.asarray(comp.compress(x, size)), atol=1e-5)


def test_label_free_mode_reads_no_qrels(synthetic):
    no_labels = type(synthetic)(
        **{**synthetic.__dict__, "qrels": {"test": synthetic.qrels["test"]}}
    )
    res = train_method("smec_unsup", no_labels)
    assert res.val_ndcg == {} and [len(s) for s in res.sets] == [32, 16, 8]


def launch_train(workdir, *flags, **kwargs):
    """Runs `python -m launch.train --config configs/tiny.py` in a subprocess."""
    cmd = [sys.executable, "-m", "launch.train", "--config", "configs/tiny.py"]
    return subprocess.run(
        [*cmd, "--workdir", str(workdir), *flags], capture_output=True, text=True, **kwargs
    )


@pytest.mark.slow
def tensorboard_scalars(folder, tag):
    """{(step, tag): value} of one scalar tag in a folder's event files (TFRecord framing:
    length, its CRC, an Event proto, its CRC), read with tensorboardX's own protos."""
    import struct

    from tensorboardX.proto import event_pb2

    out = {}
    for f in sorted(folder.iterdir()):
        data, at = f.read_bytes(), 0
        while at < len(data):
            (n,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + n])
            at += 12 + n + 4
            for v in event.summary.value:
                if v.tag == tag:
                    out[(event.step, tag)] = v.simple_value
    return out


def test_launch_train_end_to_end(tmp_path):
    out = launch_train(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "steps/s" in out.stdout and "ETA" in out.stdout
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc["results"]) == {"truncate", "pca", "smec"}
    assert set(doc["results"]["smec"]) == {"32", "16", "8"}
    for f in ("ndcg_vs_dim.png", "compressor.npz", "metrics.jsonl"):
        assert (tmp_path / f).is_file(), f
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["method"] == "smec" and written["ladder"] == [32, 16, 8]
    # the TensorBoard event file holds the logged scalars (metrics.jsonl's, same steps)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    want = {(r["step"], "train/loss"): r["train/loss"] for r in logged if "train/loss" in r}
    got = tensorboard_scalars(tmp_path / "tensorboard", "train/loss")
    assert want and got == pytest.approx(want, rel=1e-6)  # float32 in the event file
    # the verdict: the trained method at the compressed size nearest eval.verdict_size (64:
    # 16 of this ladder) against each baseline, means as in the table, intervals around them
    v = doc["verdict"]
    assert (v["method"], v["size"]) == ("smec", 16)
    mine = doc["results"]["smec"]["16"]
    assert v["all"] == pytest.approx(mine["ndcg@10"]) and v["unseen"] == pytest.approx(
        mine["ndcg@10_unseen"]
    )
    assert set(v["versus"]) == {"truncate", "pca"}
    for b, r in v["versus"].items():
        theirs = doc["results"][b]["16"]
        for part, key in (("all", "ndcg@10"), ("unseen", "ndcg@10_unseen")):
            assert r[part]["diff"] == pytest.approx(mine[key] - theirs[key], abs=1e-9)
            assert r[part]["lo"] <= r[part]["diff"] <= r[part]["hi"]
    assert "verdict: smec at 16 dims" in out.stdout and "vs pca: all" in out.stdout
    bad = launch_train(tmp_path / "bad", "--config.ladder=(64,64)")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: --config.ladder"
    )


def test_sharded_memory_trains_like_the_replicated_one(synthetic):
    rep, shard = tiny_config(), tiny_config()
    shard.memory.sharded = True
    a = train.train(rep, synthetic, verbose=False)
    b = train.train(shard, synthetic, verbose=False)
    np.testing.assert_array_equal(a.compressor.order, b.compressor.order)
    for x, y in zip(leaves(a.compressor.params), leaves(b.compressor.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_mrl_ablation_trains_every_size_jointly_as_prefixes(synthetic):
    """mrl: one stage, all ladder sizes in the loss, prefix selection, no memory; its sets are
    the plain prefixes, and it differs from the sequential (mrl_smrl) schedule."""
    res = train_method("mrl", synthetic)
    assert [list(s) for s in res.sets] == [list(range(n)) for n in (32, 16, 8)]
    assert {h["stage"] for h in res.val_history} == {1}
    seq = train_method("mrl_smrl", synthetic)
    assert {h["stage"] for h in seq.val_history} == {1, 2}
    assert not np.array_equal(res.compressor.params["w"], seq.compressor.params["w"])


def test_ads_only_ablation_picks_nested_sets_from_one_logit_vector(synthetic):
    """mrl_ads: one joint stage; every size's dims are the top-d of one logit vector over all
    N dims, in training (one Gumbel draw: the hard masks nest) and in the exported sets."""
    z = jax.random.normal(jax.random.key(3), (32,))
    rng = jax.random.key(4)
    masks = [np.asarray(ads.gumbel_topk_mask(rng, z, d, 0.5)) for d in (16, 8)]
    assert masks[0].sum() == 16 and masks[1].sum() == 8
    assert np.all(masks[1] <= masks[0])  # the 8 picked dims are among the 16
    res = train_method("mrl_ads", synthetic)
    assert {h["stage"] for h in res.val_history} == {1}
    s0, s1, s2 = (set(map(int, s)) for s in res.sets)
    assert (len(s0), len(s1), len(s2)) == (32, 16, 8)
    assert s2 <= s1 <= s0
    # the nested order puts the smallest set first, so every size is a prefix of the export
    assert set(map(int, res.compressor.order[:8])) == s2


@pytest.mark.parametrize("method", ["matryoshka_adaptor", "matryoshka_adaptor_unsup"])
def test_matryoshka_adaptor_runs_end_to_end(tmp_path, synthetic, method):
    res = train_method(method, synthetic, workdir=tmp_path)
    assert "w1" in res.compressor.params  # the residual MLP
    assert [list(s) for s in res.sets] == [list(range(n)) for n in (32, 16, 8)]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses_seen = {k for rec in logged for k in rec}
    assert {"train/topk", "train/pair", "train/rec"} <= losses_seen
    assert ("train/rank" in losses_seen) == (method == "matryoshka_adaptor")


def test_init_params_start_training_where_given(synthetic):
    """train(init_params=P) starts from P, not from model.init: with a zero learning rate
    the result is P exactly (random, so no initialisation could give it by chance)."""
    cfg = methods.get("matryoshka_adaptor").resolve(tiny_config())
    cfg.train.lr = 0.0
    rng = np.random.default_rng(0)
    fresh = model.init_params(jax.random.key(0), "residual_mlp", 32, 32, cfg.model.hidden)
    given = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in fresh.items()}
    res = train.train(cfg, synthetic, None, verbose=False, init_params=given)
    for k, v in given.items():
        np.testing.assert_array_equal(res.compressor.params[k], v)
    with pytest.raises(ValueError, match="init param 'w1' has shape"):
        train.train(cfg, synthetic, None, verbose=False, init_params=given | {"w1": given["b1"]})


def test_two_phase_adaptor_is_the_label_free_adaptor_then_the_supervised_one(tmp_path, synthetic):
    """matryoshka_adaptor_2p = matryoshka_adaptor_unsup, then matryoshka_adaptor from its
    params (bit for bit), each phase in its own resumable workdir."""
    cfg = tiny_config()
    fitted = methods.get("matryoshka_adaptor_2p")(
        methods.get("matryoshka_adaptor_2p").resolve(cfg), synthetic, tmp_path, verbose=False
    )
    assert (tmp_path / "unsup" / "checkpoints").is_dir()
    assert (tmp_path / "sup" / "checkpoints").is_dir()
    first = train_method("matryoshka_adaptor_unsup", synthetic, cfg)
    second = train_method("matryoshka_adaptor", synthetic, cfg, init_params=first.compressor.params)
    for k, v in second.compressor.params.items():
        np.testing.assert_array_equal(fitted.compressor.params[k], v)
    # the supervised phase moved the label-free result
    assert not np.array_equal(first.compressor.params["w"], second.compressor.params["w"])
    assert fitted.val_ndcg == second.val_ndcg


def test_validation_scores_the_newest_size(synthetic):
    """Early stopping looks at d_t: the stage's new size (the smallest one for MRL)."""
    for method, want in (("mrl", {8}), ("mrl_smrl", {16, 8}), ("smec", {16, 8})):
        res = train_method(method, synthetic)
        assert {h["size"] for h in res.val_history} == want, method
        last = {h["size"]: h["best"] for h in res.val_history}
        # the kept model's validation score at the final size is what early stopping recorded
        assert abs(res.val_ndcg["8"] - last[8]) < 1e-6, method


def test_search_adaptor_trains_one_map_per_size(tmp_path, synthetic):
    fitted = methods.get("search_adaptor").fit(tiny_config(), synthetic, tmp_path, verbose=False)
    comp, val = fitted.compressor, fitted.val_ndcg
    assert sorted(comp.by_size) == [8, 16, 32] and set(val) == {"8", "16", "32"}
    x = synthetic.queries[:5]
    np.testing.assert_allclose(
        comp.compress(x, 32), x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-6
    )
    w8, w16 = comp.by_size[8].params["w"], comp.by_size[16].params["w"]
    assert not np.allclose(w8[:, :8], w16[:, :8])  # separately trained, not nested
    logged = (tmp_path / "size_8" / "metrics.jsonl").read_text()
    assert '"train/rec"' in logged and '"train/pair"' not in logged
    with pytest.raises(ValueError, match="no adaptor trained for size 4"):
        comp.compress(x, 4)


def test_neighbour_lists_train_like_the_full_search(synthetic):
    """memory.neighbour_mode = "list" (neighbours from precomputed lists) trains the same
    compressor as searching the whole memory every step."""
    searched, listed = tiny_config(), tiny_config()
    searched.memory.neighbour_mode = "memory"
    listed.memory.neighbour_mode = "list"
    a = train.train(searched, synthetic, verbose=False)
    b = train.train(listed, synthetic, verbose=False)
    np.testing.assert_array_equal(a.compressor.order, b.compressor.order)
    for x, y in zip(leaves(a.compressor.params), leaves(b.compressor.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_resuming_with_other_shapes_is_refused_in_one_line(tmp_path, synthetic):
    """A workdir whose checkpoint has another memory size: a one-line error naming the
    folder, not orbax's traceback."""
    cfg = tiny_config()
    cfg.train.steps_per_stage = 4
    train_method("smec", synthetic, cfg, workdir=tmp_path)
    cfg.memory.size = 32
    (tmp_path / "run_config.json").unlink()  # a workdir from before run records
    with pytest.raises(ValueError, match="other array shapes than this config's") as err:
        train_method("smec", synthetic, cfg, workdir=tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_only_the_same_run_resumes(tmp_path, synthetic):
    """A killed run rerun with settings that keep every shape (here the learning rate and the
    seed), or on other data, is refused in one line naming the differences, the workdir
    untouched; a rerun that changes only the logging cadence resumes, bit-identically."""

    def kill_at_6(step):
        if step == 6:  # mid-stage 1; last checkpoint at step 4
            raise KeyboardInterrupt

    cfg = tiny_config()
    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, synthetic, tmp_path / "b", verbose=False, on_step=kill_at_6)
    before = {p: p.read_bytes() for p in sorted((tmp_path / "b").rglob("*")) if p.is_file()}
    other = tiny_config()
    other.train.lr, other.seed = 2e-3, 1
    with pytest.raises(ValueError) as err:
        train.train(other, synthetic, tmp_path / "b", verbose=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "b") in msg
    assert "seed 0 -> 1" in msg and "train.lr 0.001 -> 0.002" in msg, msg
    reembedded = dataclasses.replace(synthetic, corpus=-synthetic.corpus)  # same ids, other vectors
    with pytest.raises(ValueError, match=r"holds a run with other settings \(data \(sha256 differ"):
        train.train(cfg, reembedded, tmp_path / "b", verbose=False)
    after = {p: p.read_bytes() for p in sorted((tmp_path / "b").rglob("*")) if p.is_file()}
    assert after == before
    cfg.train.log_every = 3  # resume-safe
    resumed = train.train(cfg, synthetic, tmp_path / "b", verbose=False)
    straight = train.train(tiny_config(), synthetic, tmp_path / "a", verbose=False)
    for x, y in zip(
        leaves(straight.compressor.params), leaves(resumed.compressor.params), strict=True
    ):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_blocks_of_steps_in_one_dispatch_train_like_one_step_per_call(tmp_path, synthetic):
    """train.steps_per_call = 3 (a lax.scan over prefetched batches per dispatch, log,
    checkpoint and validation steps between dispatches) gives the compressor, the
    validation record and the checkpoints of one step per call; an interrupted blocked run
    resumes to the same result."""
    single, blocked = tiny_config(), tiny_config()
    for c in (single, blocked):
        c.train.log_every = 8
    blocked.train.steps_per_call = 3
    blocks = []
    real = train.make_block_step

    def counting(*args, **kwargs):
        fn = real(*args, **kwargs)
        return lambda st, b: (blocks.append(b["q"].shape[0]), fn(st, b))[1]

    a = train.train(single, synthetic, tmp_path / "a", verbose=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "make_block_step", counting)
        b = train.train(blocked, synthetic, tmp_path / "b", verbose=False)
    # from steps 0 and 4 of each 8-step stage: 1-3 and 5-7 in one call, 4 and 8 alone
    assert blocks == [3, 3] * 2, blocks
    assert [h["val_ndcg@10"] for h in a.val_history] == [h["val_ndcg@10"] for h in b.val_history]
    np.testing.assert_array_equal(a.compressor.order, b.compressor.order)
    for x, y in zip(leaves(a.compressor.params), leaves(b.compressor.params), strict=True):
        np.testing.assert_array_equal(x, y)
    ck_a, ck_b = (Checkpointer(tmp_path / r / "checkpoints") for r in "ab")
    assert ck_a.latest_step() == ck_b.latest_step() == 16

    def kill_at_7(step):
        if step == 7:  # the end of a block mid-stage 1; last checkpoint at step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train(blocked, synthetic, tmp_path / "c", verbose=False, on_step=kill_at_7)
    resumed = train.train(blocked, synthetic, tmp_path / "c", verbose=False)
    for x, y in zip(leaves(a.compressor.params), leaves(resumed.compressor.params), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_lr_decay_halfway_is_adam_at_half_the_rate(synthetic, decay):
    """Halfway through a stage both decays take half the rate: a step there at twice the
    base rate equals a constant-rate step, and differs from one at twice the rate."""
    sizes = smrl.sizes_for(tiny_config().ladder, synthetic.dim)
    mesh = parallel.data_mesh(1)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    tq = batching.resolve(synthetic, "train", synthetic.judged_queries("train"), 8)
    batch = batching.supervised_batches(synthetic, tq, batch_queries=16, n_pos=2, n_hard=3, seed=0)[
        0
    ]
    batch = parallel.put_batch(
        batch, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    )

    def one_step(lr, lr_decay):
        cfg = tiny_config()
        cfg.ads.enabled, cfg.memory.enabled = False, False
        cfg.train.update(lr=lr, lr_decay=lr_decay)
        st = state.create_train_state(cfg, synthetic.dim, 32, sizes, synthetic.corpus)
        st = jax.device_put(st.replace(stage_step=st.stage_step + cfg.train.steps_per_stage // 2))
        step = train.make_train_step(smrl.make_stage(1, sizes, None), cfg, 32, mesh)
        return leaves(step(jax.device_put(st, replicated), batch)[0].params)

    decayed, constant = one_step(2e-3, decay), one_step(1e-3, "constant")
    for x, y in zip(decayed, constant, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)
    assert any(
        not np.allclose(x, y) for x, y in zip(one_step(2e-3, "constant"), constant, strict=True)
    )


def test_lr_factor_runs_from_one_to_zero():
    for decay in ("linear", "cosine"):
        f = [float(state.lr_factor(decay, s, 100)) for s in (0, 50, 100)]
        np.testing.assert_allclose(f, [1.0, 0.5, 0.0], atol=1e-6)
    assert float(state.lr_factor("constant", 99, 100)) == 1.0


def first_step_grads(data, n_devices: int, loss_scale_by_devices: bool = False):
    """The gradient of stage 1's first step on ``n_devices`` (batch sharded over them)."""
    cfg = tiny_config()
    sizes = smrl.sizes_for(cfg.ladder, data.dim)
    mesh = parallel.data_mesh(n_devices)
    tq = batching.resolve(data, "train", data.judged_queries("train"), 8)
    batch = batching.supervised_batches(data, tq, batch_queries=16, n_pos=2, n_hard=3, seed=0)[0]
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(parallel.DATA))
    st = jax.device_put(state.create_train_state(cfg, data.dim, 32, sizes, data.corpus), replicated)
    stage = smrl.make_stage(1, sizes, jax.tree.map(np.asarray, st.ads))
    loss_fn = objective.make_loss_fn(stage, cfg, 32, mesh)
    if loss_scale_by_devices:  # the bug a device test must catch: a sum over devices, not a mean
        inner = loss_fn

        def loss_fn(*args):
            loss, aux = inner(*args)
            return loss * n_devices, aux

    rng = jax.random.fold_in(jax.random.wrap_key_data(st.rng), st.step)
    grads, _ = jax.jit(jax.grad(loss_fn, has_aux=True))(
        state.trainable(st), st, parallel.put_batch(batch, sharding), rng
    )
    return leaves(grads)


def test_first_step_gradients_equal_on_one_and_eight_devices(synthetic):
    """Adam's update is invariant to the gradient's scale, so trained parameters cannot show
    a loss summed over devices instead of averaged; the first step's gradients can."""
    one = first_step_grads(synthetic, 1)
    eight = first_step_grads(synthetic, 8)
    assert any(np.abs(g).max() > 0 for g in one)
    for a, b in zip(one, eight, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    scaled = first_step_grads(synthetic, 8, loss_scale_by_devices=True)
    assert not all(
        np.allclose(b, a, rtol=1e-4, atol=1e-6) for a, b in zip(one, scaled, strict=True)
    )


def test_a_field_added_since_the_record_matches_at_its_default(synthetic):
    """A run recorded by an older version (its record lacks a field added since) resumes when
    the new field is at its default, and is refused when it is not."""
    from smec_jax.training import run_record

    rec = run_record.record(tiny_config(), synthetic)
    old = {"config": dict(rec["config"]), "data": rec["data"]}
    del old["config"]["eval.verdict_size"], old["config"]["data.corpus"]
    assert run_record.differences(old, rec) == []
    changed = tiny_config()
    changed.data.corpus = "docs.npy"
    assert run_record.differences(old, run_record.record(changed, synthetic)) == [
        "data.corpus null -> 'docs.npy'"
    ]
