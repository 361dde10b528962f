"""S-XBM ring buffer against a plain Python FIFO, and neighbour search against brute force."""

from collections import deque

import jax
import jax.numpy as jnp
import numpy as np

from smec_jax.checkpoint import Checkpointer
from smec_jax.core import memory


def fifo_reference(size, batches):
    q = deque(maxlen=size)
    for x, ids, keep in batches:
        for row, i, k in zip(x, ids, keep, strict=True):
            if k:
                q.append((i, row))
    return q


def test_wraps_fifo_and_skips_dropped_rows():
    size, dim = 7, 3
    rng = np.random.default_rng(0)
    enqueue = jax.jit(memory.enqueue)
    mem = memory.init(size, dim)
    batches = []
    for b in range(6):
        n = 4 if b != 4 else 10  # one call larger than the memory
        x = rng.normal(size=(n, dim)).astype(np.float32)
        ids = np.arange(b * 100, b * 100 + n)
        keep = rng.random(n) > 0.25
        batches.append((x, ids, keep))
        mem = enqueue(mem, jnp.asarray(x), jnp.asarray(ids), jnp.asarray(keep))
    ref = fifo_reference(size, batches)
    # The newest entry sits just before the pointer; walk back through the ring.
    ptr, got = int(mem.ptr), []
    for j in range(len(ref)):
        slot = (ptr - len(ref) + j) % size
        assert bool(mem.valid[slot])
        got.append((int(mem.ids[slot]), np.asarray(mem.entries[slot])))
    assert [i for i, _ in got] == [i for i, _ in ref]
    for (_, a), (_, b) in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)


def test_neighbours_match_brute_force_and_exclude_empty_and_self():
    rng = np.random.default_rng(1)
    mem = memory.init(12, 4)
    x_mem = rng.normal(size=(9, 4)).astype(np.float32)
    x_mem /= np.linalg.norm(x_mem, axis=1, keepdims=True)
    mem = memory.enqueue(mem, jnp.asarray(x_mem), jnp.arange(9))  # 3 slots stay empty
    x = np.concatenate([x_mem[:3], rng.normal(size=(2, 4)).astype(np.float32)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.array([0, 1, 2, 50, 51])
    idx, sim, ok = jax.jit(memory.neighbours, static_argnums=3)(
        mem, jnp.asarray(x), jnp.asarray(ids), 10
    )
    for i in range(len(x)):
        cand = [j for j in range(9) if j != ids[i]]
        s = x_mem[cand] @ x[i]
        order = [cand[j] for j in np.argsort(-s, kind="stable")]
        n_ok = int(np.asarray(ok[i]).sum())
        assert n_ok == len(cand)  # 8 or 9 usable entries, never the empty slots
        np.testing.assert_array_equal(np.asarray(idx[i])[:n_ok], order)
        np.testing.assert_allclose(np.asarray(sim[i])[:n_ok], np.sort(s)[::-1], atol=1e-6)
        assert ids[i] not in np.asarray(mem.ids)[np.asarray(idx[i])[:n_ok]]


def test_survives_a_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    mem = memory.enqueue(
        memory.init(16, 5), jnp.asarray(rng.normal(size=(11, 5)), jnp.float32), jnp.arange(11)
    )
    ckpt = Checkpointer(tmp_path)
    ckpt.save(3, {"memory": mem})
    ckpt.wait()
    back = ckpt.restore({"memory": memory.init(16, 5)})["memory"]
    for a, b in zip(jax.tree.leaves(mem), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ckpt.close()


def test_sharded_memory_gives_identical_neighbours():
    """Per-shard top-k + merge over 8 devices == the replicated search, ties included."""
    from smec_jax import parallel

    rng = np.random.default_rng(3)
    base = rng.normal(size=(20, 6)).astype(np.float32)
    entries = base[rng.integers(0, 20, size=37)]  # duplicates -> tied similarities
    entries /= np.linalg.norm(entries, axis=1, keepdims=True)
    mem = memory.enqueue(memory.init(40, 6), jnp.asarray(entries), jnp.arange(37))  # 3 empty
    x = jnp.asarray(entries[:5])
    ids = jnp.asarray([0, 1, 2, 99, 98])
    mesh = parallel.data_mesh(8)
    want = memory.neighbours(mem, x, ids, 7)
    queue = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    layout = memory.Memory(entries=queue, ids=queue, valid=queue, ptr=rep, counts=rep, slot_of=rep)
    sharded = jax.device_put(mem, layout)
    got = jax.jit(lambda m, a, b: memory.neighbours_sharded(m, a, b, 7, mesh, "data"))(
        sharded, x, ids
    )
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(np.asarray(w), np.asarray(g))


def _universe(u=40, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(u, dim)).astype(np.float32)
    e[7] = e[3]  # an exact duplicate under another id
    return jnp.asarray(e / np.linalg.norm(e, axis=1, keepdims=True))


def _fill(mem, table, rng, calls, n=9, u=40):
    """Enqueue ``calls`` batches of ids drawn from the universe (ids repeat across calls:
    an id can hold several slots; the ring wraps)."""
    for _ in range(calls):
        ids = rng.choice(u, size=n, replace=False)
        keep = rng.random(n) > 0.2
        mem = memory.enqueue(mem, table[ids], jnp.asarray(ids), jnp.asarray(keep))
    return mem


def test_id_tables_count_every_slot_and_point_at_a_slot_holding_the_id():
    table, rng = _universe(), np.random.default_rng(1)
    mem = memory.init(16, 6, n_ids=40)
    for _ in range(7):
        mem = _fill(mem, table, rng, 1)
        ids, valid = np.asarray(mem.ids), np.asarray(mem.valid)
        np.testing.assert_array_equal(np.asarray(mem.counts), np.bincount(ids[valid], minlength=40))
        for i in np.flatnonzero(np.asarray(mem.counts)):
            assert ids[int(mem.slot_of[i])] == i and valid[int(mem.slot_of[i])]


def test_neighbour_lists_find_what_the_full_search_finds():
    """Wrap-around, empty slots, anchors that are in the memory (self excluded), ids held
    twice, a duplicate embedding: wherever the lists are long enough, the (id, cosine)
    multiset of the k neighbours equals the full search's; elsewhere ``enough`` is False."""
    table, rng = _universe(), np.random.default_rng(2)
    k = 4
    for calls, m in ((1, 39), (3, 8), (6, 5), (6, 39)):
        mem = _fill(memory.init(16, 6, n_ids=40), table, rng, calls)
        lists = memory.neighbour_lists(table, m)
        anchors = jnp.asarray(rng.choice(40, size=12, replace=False))
        idx, sim, ok = memory.neighbours(mem, table[anchors], anchors, k)
        slots, lsim, count, enough = memory.neighbours_from_lists(mem, anchors, *lists, k)
        for i in range(12):
            full = sorted(
                (int(mem.ids[s]), round(float(v), 5))
                for s, v, o in zip(idx[i], sim[i], ok[i], strict=True)
                if o
            )
            listed = sorted(
                (int(mem.ids[s]), round(float(v), 5))
                for s, v, c in zip(slots[i], lsim[i], count[i], strict=True)
                for _ in range(int(c))
            )
            if bool(enough[i]):
                assert listed == full, (calls, m, i)
            else:
                assert len(listed) < k and (m < 39 or len(full) < k)
