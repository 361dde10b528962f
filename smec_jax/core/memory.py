"""S-XBM: the selectable cross-batch memory, a device-resident FIFO ring buffer.

The memory holds *original* (frozen-encoder) embeddings of past batches with their ids, a
validity mask and a write pointer: a pytree inside the train state, updated by pure
functions, so it is jitted, sharded and checkpointed with everything else. Each training
sample looks up its top-k memory entries by original cosine (empty slots and entries with
the sample's own id excluded); the unsupervised loss then asks the compressor to keep
those similarities (:func:`smec_jax.core.losses.unsup_loss`). The step enqueues the batch
*after* computing the loss, so a sample never finds itself from the same step.
"""

from __future__ import annotations

import chex
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Memory:
    """entries (Q, D) original embeddings; ids (Q,) int32; valid (Q,) bool; ptr () int32;
    counts (U,) int32 slots holding each id and slot_of (U,) int32 the newest such slot (-1
    none), kept for the neighbour lists (``neighbour_mode="list"``; U = 1 otherwise)."""

    entries: jax.Array
    ids: jax.Array
    valid: jax.Array
    ptr: jax.Array
    counts: jax.Array
    slot_of: jax.Array

    @property
    def size(self) -> int:
        return self.entries.shape[0]


def init(size: int, dim: int, n_ids: int = 1) -> Memory:
    """An empty memory of ``size`` slots; ``n_ids`` > 1 tracks which ids it holds."""
    return Memory(
        entries=jnp.zeros((size, dim), jnp.float32),
        ids=jnp.full((size,), -1, jnp.int32),
        valid=jnp.zeros((size,), bool),
        ptr=jnp.zeros((), jnp.int32),
        counts=jnp.zeros((n_ids,), jnp.int32),
        slot_of=jnp.full((n_ids,), -1, jnp.int32),
    )


def enqueue(
    mem: Memory, x_nd: jax.Array, ids_n: jax.Array, keep_n: jax.Array | None = None
) -> Memory:
    """Writes the rows of ``x_nd`` (where ``keep_n``) at the pointer, oldest entries first out.

    Rows not kept (padding, duplicates) take no slot. With more kept rows than slots, the
    last ``size`` of them remain.
    """
    n = x_nd.shape[0]
    chex.assert_shape(ids_n, (n,))
    keep_n = jnp.ones((n,), bool) if keep_n is None else keep_n
    # Slot of each kept row: ptr + (number of kept rows before it); dropped rows go nowhere.
    order = jnp.cumsum(keep_n) - 1
    n_kept = jnp.sum(keep_n).astype(jnp.int32)
    # Rows that would be overwritten within this same call are dropped too (keep the newest).
    survives = keep_n & (order >= n_kept - mem.size)
    slot = jnp.where(survives, (mem.ptr + order) % mem.size, mem.size)  # size = out of bounds
    counts, slot_of = mem.counts, mem.slot_of
    if counts.shape[0] > 1:  # id tables: the evicted ids lose a slot, the written ones gain one
        n_ids = counts.shape[0]
        written = slot < mem.size
        old = jnp.where(written, mem.ids[jnp.minimum(slot, mem.size - 1)], -1)
        old_valid = written & mem.valid[jnp.minimum(slot, mem.size - 1)]
        counts = counts.at[jnp.where(old_valid, old, n_ids)].add(-1, mode="drop")
        new = jnp.where(written, ids_n.astype(jnp.int32), n_ids)
        counts = counts.at[new].add(1, mode="drop")
        slot_of = slot_of.at[new].set(slot, mode="drop")
    return Memory(
        entries=mem.entries.at[slot].set(x_nd.astype(mem.entries.dtype), mode="drop"),
        ids=mem.ids.at[slot].set(ids_n.astype(jnp.int32), mode="drop"),
        valid=mem.valid.at[slot].set(True, mode="drop"),
        ptr=(mem.ptr + n_kept) % mem.size,
        counts=counts,
        slot_of=slot_of,
    )


def neighbours(mem: Memory, x_nd: jax.Array, ids_n: jax.Array, k: int):
    """Top-k memory entries of each row by original cosine.

    Args:
      x_nd: (n, D) L2-normalised original embeddings; ids_n: (n,) their ids.

    Returns:
      idx (n, k) memory slots, sim (n, k) original cosines, ok (n, k) bool (False where the
      memory had fewer than k usable entries).
    """
    sim = jnp.dot(x_nd, mem.entries.T, preferred_element_type=jnp.float32)
    usable = mem.valid[None, :] & (mem.ids[None, :] != ids_n[:, None])
    sim = jnp.where(usable, sim, -jnp.inf)
    top, idx = jax.lax.top_k(sim, k)
    return idx, jnp.where(jnp.isfinite(top), top, 0.0), jnp.isfinite(top)


def neighbours_sharded(mem: Memory, x_nd: jax.Array, ids_n: jax.Array, k: int, mesh, axis: str):
    """:func:`neighbours` for a memory sharded along its queue axis over ``mesh[axis]``.

    Each device finds the top-k of its own slots, the (n, k) candidate lists are gathered
    and merged. Candidates stay in slot order, and ``top_k`` is stable, so ties resolve to
    the lower slot exactly as with the replicated memory: the results are identical.
    """
    from jax.sharding import PartitionSpec as P

    def per_shard(entries, slot_ids, valid, x, ids):
        none = jnp.zeros((1,), jnp.int32)
        local = Memory(entries, slot_ids, valid, jnp.zeros((), jnp.int32), none, none - 1)
        idx, sim, ok = neighbours(local, x, ids, min(k, entries.shape[0]))
        sim = jnp.where(ok, sim, -jnp.inf)
        idx = idx + jax.lax.axis_index(axis) * entries.shape[0]
        all_sim = jax.lax.all_gather(sim, axis, axis=1, tiled=True)
        all_idx = jax.lax.all_gather(idx, axis, axis=1, tiled=True)
        top, pos = jax.lax.top_k(all_sim, k)
        return jnp.take_along_axis(all_idx, pos, axis=1), top

    idx, top = jax.shard_map(
        per_shard,
        mesh=mesh,
        in_specs=(P(axis), P(axis), P(axis), P(), P()),
        out_specs=(P(), P()),
        check_vma=False,
    )(mem.entries, mem.ids, mem.valid, x_nd, ids_n)
    ok = jnp.isfinite(top)
    return idx, jnp.where(ok, top, 0.0), ok


def neighbour_lists(emb_ud: jax.Array, m: int, chunk: int = 1024):
    """Each id's ``m`` nearest other ids by original cosine (``emb_ud``: every id's unit
    embedding, row = id), with their cosines, best first: (U, m) int32 and (U, m) float32.

    The cosines are computed as :func:`neighbours` computes them (one float32 dot), so the
    two ways of finding neighbours agree on every similarity. Ties: lower id first.
    """
    u = emb_ud.shape[0]
    m = min(m, u - 1)
    ids, sims = [], []
    for start in range(0, u, chunk):
        block = emb_ud[start : start + chunk]
        s = jnp.dot(block, emb_ud.T, preferred_element_type=jnp.float32)
        own = jnp.arange(start, start + block.shape[0])[:, None] == jnp.arange(u)[None, :]
        top, idx = jax.lax.top_k(jnp.where(own, -jnp.inf, s), m)
        ids.append(idx.astype(jnp.int32))
        sims.append(top)
    return jnp.concatenate(ids), jnp.concatenate(sims)


def neighbours_from_lists(mem: Memory, ids_n: jax.Array, lists_um, sims_um, k: int):
    """:func:`neighbours` from precomputed neighbour lists, without touching the entries.

    The memory holds frozen original embeddings, so an id's top-k among the memory's
    entries are the first ids of its global neighbour list that the memory holds, each
    counted once per slot holding it (copies are separate entries): exact whenever the
    list holds k present entries (``enough``); otherwise the caller falls back to
    :func:`neighbours`.

    Returns:
      slots (n, k) newest slot of each neighbour id, sims (n, k), weights (n, k) int32
      (entries that id stands for; 0 = unused), enough (n,) bool.
    """
    rows = jnp.maximum(ids_n, 0)
    cand, csim = lists_um[rows], sims_um[rows]  # (n, m)
    cnt = mem.counts[cand]
    before = jnp.cumsum(cnt, axis=1) - cnt
    w = jnp.clip(k - before, 0, cnt)
    enough = jnp.sum(w, axis=1) >= k
    # the used positions (at most k: each takes at least one entry) first, then the unused
    # ones, each in list order (a stable argsort of used-first, without sorting): position p
    # goes to column used-rank(p), or n_used + unused-rank(p); columns >= k are dropped
    used = w > 0
    n_used = jnp.sum(used, axis=1, keepdims=True)
    col = jnp.where(used, jnp.cumsum(used, axis=1), n_used + jnp.cumsum(~used, axis=1)) - 1
    m = cand.shape[1]
    pos = jnp.sum((col[:, :, None] == jnp.arange(k)) * jnp.arange(m)[:, None], axis=1)
    take = lambda a: jnp.take_along_axis(a, pos, axis=1)
    return mem.slot_of[take(cand)], take(csim), take(w), enough
