"""Speed measurements: timers, the reference train step, its FLOP model, and the benchmarks.

Benchmarks (``python -m launch.benchmark --bench NAME``; medians of several runs):
  eval        scoring every ladder size of the configured dataset with truncation and PCA,
              after the embeddings are loaded and the methods fitted (warm-up compiles).
  matmul      this machine's float32 matmul peak with the same JAX build (square matmuls).
  retrieval   exact top-100 over a synthetic float16 corpus (default 1,000,000 x 768) in
              chunks, sharded over all devices: queries/s and peak memory for two query
              counts (memory must not grow with the number of queries).
  train_step  SMEC train steps/s and achieved GFLOP/s at the reference shape: D = N = 768,
              128 queries x 8 docs per batch, stage pair 768 -> 384, memory 5000, k = 10
              (``--shapes 4096``: the paper's regime), per neighbour mode, 4 distinct
              batches in turn; next to the plain PyTorch step where torch is installed.
"""

from __future__ import annotations

import gc
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from smec_jax import files, methods, parallel
from smec_jax.core import codes, memory, smrl
from smec_jax.datasets import sources
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.serving import codes_folder
from smec_jax.training import state
from smec_jax.training.train import make_train_step

# ============================================================================ timers


def timed(fn: Callable[[], object], repeats: int) -> dict:
    """Median and min wall time of ``repeats`` calls, after one warm-up (compile) call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": repeats}


def time_steps(step, st, batches, repeats: int, steps: int = 10) -> dict:
    """:func:`timed` runs of ``steps`` train steps (the state is donated, so each run
    continues from the last one's output), cycling through ``batches`` (one batch or a
    list); ``median_s`` is per run; ``state`` is the state after the last run."""
    batches = batches if isinstance(batches, list) else [batches]
    holder = {"state": st, "i": 0}

    def run_steps(n=steps):
        s = holder["state"]
        for _ in range(n):
            s, _ = step(s, batches[holder["i"] % len(batches)])
            holder["i"] += 1
        jax.block_until_ready(s)
        holder["state"] = s

    return timed(run_steps, repeats) | {"state": holder["state"]}


def peak_memory_bytes() -> tuple[str, int]:
    """Peak device memory on accelerators; on CPU the process's peak RSS, since the last
    :func:`reset_peak_memory` where Linux allows it (``VmHWM``), else since it started."""
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return "device_peak_bytes", int(stats["peak_bytes_in_use"])
    try:
        with open("/proc/self/status") as f:
            hwm = next(line for line in f if line.startswith("VmHWM:"))
        return "process_peak_rss_bytes", int(hwm.split()[1]) * 1024
    except (OSError, StopIteration):
        import resource

        return "process_peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_memory() -> None:
    """Starts a new CPU peak-RSS window (Linux: ``5 > /proc/self/clear_refs`` resets VmHWM
    to the current RSS), so each part of a benchmark reports its own peak; a no-op where
    that is not allowed (accelerators report their device's peak)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# ============================================================================ the reference step


def reference_step(
    config, *, dim=768, batch_queries=128, docs_per_query=8, mem_size=5000, k=10, n_batches=1
):
    """A compiled stage-1 step (dim -> dim/2), its state and one batch at the given shape
    (a list of ``n_batches`` when more than one), memory full (random unit vectors: the
    starting point does not change the cost). Ids: each batch's queries, then its
    documents, batch after batch, then the memory's entries; with
    ``memory.neighbour_mode = "list"`` the neighbour lists are those of all of them.

    Timing several distinct batches in turn keeps the memory holding distinct items, as in
    training; one batch fed again and again fills it with copies of itself, and then some
    sample's list runs short and the list mode falls back to the full search every step
    (on SciFact training it never does: ``list_miss`` stays 0).
    """
    cfg = config.copy_and_resolve_references()
    cfg.train.update(batch_queries=batch_queries, n_pos=2, n_hard=docs_per_query - 2)
    cfg.train.supervised = True
    cfg.memory.update(size=mem_size, k=k, enabled=True)
    cfg.model.init = "identity"
    sizes = (dim, dim // 2)
    mesh = parallel.data_mesh(cfg.mesh.num_devices or jax.device_count())
    rep = NamedSharding(mesh, P())
    rng = np.random.default_rng(0)
    c = batch_queries * docs_per_query
    unit = lambda n: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(
        rng.normal(size=(n, dim)).astype(np.float32)
    )
    qd = [(unit(batch_queries), unit(c)) for _ in range(n_batches)]
    m = unit(mem_size)
    first_mem_id = n_batches * (batch_queries + c)
    lists, n_ids = None, 1
    if cfg.memory.neighbour_mode == "list":
        table = jnp.asarray(np.concatenate([a for pair in qd for a in pair] + [m]))
        lists, n_ids = memory.neighbour_lists(table, cfg.memory.list_size), table.shape[0]
    st = jax.device_put(state.create_train_state(cfg, dim, dim, sizes, n_ids=n_ids), rep)
    grades = np.zeros((batch_queries, c), np.int32)
    pos_idx = np.zeros((batch_queries, 2), np.int32)
    for i in range(batch_queries):
        grades[i, i * docs_per_query] = 1
        pos_idx[i, 0] = i * docs_per_query
    batches = []
    for j, (q, d) in enumerate(qd):
        first = j * (batch_queries + c)
        batch = {
            "q": q,
            "q_ids": np.arange(batch_queries, dtype=np.int32) + first,
            "d": d,
            "d_ids": np.arange(c, dtype=np.int32) + first + batch_queries,
            "d_keep": np.ones(c, bool),
            "grades": grades,
            "valid": np.ones((batch_queries, c), bool),
            "pos_idx": pos_idx,
            "pos_ok": np.arange(2)[None, :].repeat(batch_queries, 0) == 0,
        }
        batches.append(parallel.put_batch(batch, NamedSharding(mesh, P(parallel.DATA))))
    mem = memory.enqueue(st.memory, jnp.asarray(m), jnp.arange(mem_size) + first_mem_id)
    st = jax.device_put(st.replace(memory=mem), rep)
    step = make_train_step(smrl.make_stage(1, sizes, None), cfg, dim, mesh, lists)
    return step, st, (batches[0] if n_batches == 1 else batches)


def step_matmul_flops(mode: str, *, b=128, c=1024, dim=768, d=768, q=5000, k=10) -> float:
    """Matmul FLOPs of one reference step (forward + backward to the params), by hand.

    n = b + c samples. Forward: compress the batch (2 n D d), scores at two sizes
    (2 x 2 b c d), neighbour search (2 n Q D), neighbour compression ("memory": 2 Q D d,
    "gather": 2 n k D d; "list": no search, the memory as "memory"), neighbour cosines
    (2 x 2 n k d). Backward to W only: the same
    compressions once more, scores and cosines twice. Matches XLA's CPU count within 2%;
    XLA's GPU count leaves out cuBLAS calls, so this is the figure to compare across devices.
    """
    n = b + c
    nbr = 2 * n * k * dim * d if mode == "gather" else 2 * q * dim * d
    search = 0 if mode == "list" else 2 * n * q * dim  # list mode reads neighbours, no search
    fwd = 2 * n * dim * d + 2 * (2 * b * c * d) + search + nbr + 2 * (2 * n * k * d)
    bwd = 2 * n * dim * d + 2 * (4 * b * c * d) + nbr + 2 * (4 * n * k * d)
    return float(fwd + bwd)


def xla_flops(step, st, batch) -> float:
    """FLOPs of the compiled step by XLA's cost analysis."""
    cost = step.lower(st, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", 0.0))


# ============================================================================ benchmarks


def bench_eval(config, repeats: int, **_) -> dict:
    ds = sources.load(config.data)
    ladder = tuple(config.ladder)
    fitted = {m: methods.get(m).fit(config, ds).compressor for m in ("truncate", "pca")}
    evaluator = Evaluator.from_config(ds, config.eval)
    res = timed(lambda: evaluator.evaluate(fitted, ladder), repeats)
    res |= {
        "dataset": ds.name,
        "encoder": ds.encoder,
        "sizes": list(ladder),
        "methods": 2,
        "queries": len(evaluator.qids),
        "docs": len(ds.corpus_ids),
    }
    print(
        f"eval: {res['methods']} methods x {len(ladder)} sizes on {ds.name} "
        f"({res['queries']} queries x {res['docs']} docs): median {res['median_s']:.3f}s, "
        f"{res['median_s'] / (2 * len(ladder)):.3f}s per size"
    )
    return res


def bench_matmul(config, repeats: int, **_) -> dict:
    """Square matmuls in float32 (the train step's dtype) and bfloat16; the best is the peak."""
    del config
    out = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        best = {}
        sizes = (1024, 2048, 4096) if jax.default_backend() == "cpu" else (4096, 8192)
        for n in sizes:
            a = jax.random.normal(jax.random.key(0), (n, n), dtype)
            f = jax.jit(lambda x: x @ x)
            r = timed(lambda a=a, f=f: f(a).block_until_ready(), repeats)
            gflops = 2 * n**3 / r["median_s"] / 1e9
            print(f"matmul {n}x{n}x{n} {jnp.dtype(dtype).name}: {gflops:.1f} GFLOP/s")
            if gflops > best.get("gflops", 0):
                best = {"gflops": gflops, "n": n, **r}
        out[jnp.dtype(dtype).name] = best
    return out


NEIGHBOUR_MODES = ("memory", "gather", "list")
REFERENCE_BATCHES = 4  # distinct batches timed in turn (see reference_step)
# Per shape: steps per timed run (seconds per step at 4096 on a 2-core CPU), and the
# PyTorch variants timed with ADS (torch.compile unrolls the relaxed top-k's 2048 softmaxes
# at 4096 and did not finish compiling in 15 minutes; without ADS both are timed).
TIMED_STEPS = {"768": 10, "4096": 3}
TORCH_ADS_VARIANTS = {"768": ("eager", "compiled"), "4096": ("eager",)}

SHAPES = {
    "768": dict(dim=768, batch_queries=128, docs_per_query=8, mem_size=5000, k=10),
    "4096": dict(dim=4096, batch_queries=128, docs_per_query=8, mem_size=5000, k=10),
}


def bench_train_step(
    config, repeats: int, *, shapes=("768",), neighbour_modes=NEIGHBOUR_MODES, **_
) -> dict:
    """The reference step with each way of finding and compressing memory neighbours, at
    each shape; next to the plain PyTorch step (smec_jax/studies/torch_peer.py) where torch is
    installed, measured in the same process and window."""
    out = {}
    for shape in shapes:
        dims = SHAPES[shape]
        res = {}
        for mode in neighbour_modes:
            cfg = config.copy_and_resolve_references()
            cfg.memory.neighbour_mode = mode
            res[mode] = _bench_one_step(cfg, repeats, mode, dims)
        best = max(res, key=lambda m: res[m]["steps_per_s"])
        res["fastest_mode"] = best
        cfg = config.copy_and_resolve_references()
        cfg.memory.neighbour_mode, cfg.ads.enabled = best, False
        res["no_ads"] = _bench_one_step(cfg, repeats, best, dims)
        try:
            from smec_jax.studies import torch_peer
        except ImportError:
            print("train_step: torch is not installed; no PyTorch peer to compare with")
            torch_peer = None
        if torch_peer is not None:
            for key, ads, ours in (
                ("torch_peer", True, res[best]),
                ("torch_peer_no_ads", False, res["no_ads"]),
            ):
                variants = TORCH_ADS_VARIANTS[shape] if ads else ("eager", "compiled")
                peer = torch_peer.bench(
                    repeats=repeats,
                    steps=TIMED_STEPS[shape],
                    variants=variants,
                    ads=ads,
                    **_torch_shape(dims),
                )
                res[key] = peer
                if peer["best_steps_per_s"]:
                    ratio = ours["steps_per_s"] / peer["best_steps_per_s"]
                    res[f"ratio_{key}"] = ratio
                    print(
                        f"train_step D={shape}{'' if ads else ', no ADS'}: {ratio:.2f}x the "
                        f"best PyTorch variant ({peer})"
                    )
        out[shape] = res
    return out


def bench_train_4096(
    config, repeats: int, *, train_steps: int = 20, neighbour_modes=("memory", "list"), **_
) -> dict:
    """End-to-end training of the default schedule at the paper's regime: synthetic 4096-d
    embeddings, ladder 4096 -> 2048 -> 1024 -> 512 -> 256 -> 128, memory 5000, each
    neighbour mode; ``train_steps`` per stage (the default schedule runs 300). Wall time,
    steps/s and peak memory."""
    from smec_jax.datasets.synthetic import make_synthetic
    from smec_jax.training import train

    del repeats
    ds = make_synthetic(n_docs=6000, n_train=1200, n_test=200, dim=4096, rank=64, seed=0)
    out = {"steps_per_stage": train_steps, "stages": 5}
    for mode in neighbour_modes:
        cfg = config.copy_and_resolve_references()
        cfg.data.source = "synthetic"
        cfg.ladder = (4096, 2048, 1024, 512, 256, 128)
        cfg.memory.neighbour_mode = mode
        cfg.train.update(
            steps_per_stage=train_steps, eval_every=max(1, train_steps // 2), log_every=train_steps
        )
        gc.collect()
        reset_peak_memory()  # each mode's own peak, not the process's so far
        t = time.perf_counter()
        train.train(cfg, ds, verbose=False)
        wall = time.perf_counter() - t
        key, peak = peak_memory_bytes()
        out[mode] = {"wall_s": wall, "steps_per_s": 5 * train_steps / wall, key: peak}
        print(
            f"train 4096-d [{mode}]: {wall:.1f}s for 5 x {train_steps} steps "
            f"({5 * train_steps / wall:.2f} steps/s incl. compile and validation), "
            f"{key} {peak / 2**30:.2f} GiB"
        )
    return out


def _torch_shape(dims: dict) -> dict:
    return dict(
        dim=dims["dim"],
        b=dims["batch_queries"],
        docs_per_query=dims["docs_per_query"],
        mem_size=dims["mem_size"],
        k=dims["k"],
    )


def bench_torch_peer(config, repeats: int, *, shapes=("768",), **_) -> dict:
    """The plain PyTorch step alone (eager and torch.compile)."""
    from smec_jax.studies import torch_peer

    del config
    out = {}
    for shape in shapes:
        out[shape] = torch_peer.bench(
            repeats=repeats,
            steps=TIMED_STEPS[shape],
            variants=TORCH_ADS_VARIANTS[shape],
            **_torch_shape(SHAPES[shape]),
        )
        print(f"torch_peer D={shape}: {out[shape]}")
    return out


def _bench_one_step(config, repeats: int, label: str, dims: dict) -> dict:
    step, st, batches = reference_step(config, n_batches=REFERENCE_BATCHES, **dims)
    flops = xla_flops(step, st, batches[0])
    timed_steps = TIMED_STEPS[str(dims["dim"])]
    r = time_steps(step, st, batches, repeats, timed_steps)
    sps = timed_steps / r["median_s"]
    b, c = dims["batch_queries"], dims["batch_queries"] * dims["docs_per_query"]
    model_flops = step_matmul_flops(
        label, b=b, c=c, dim=dims["dim"], d=dims["dim"], q=dims["mem_size"], k=dims["k"]
    )
    key, peak = peak_memory_bytes()
    misses = None
    if label == "list":  # steps (of 2 runs more) in which the list ran short: the search ran
        misses, st = 0, r.pop("state")
        for i in range(2 * timed_steps):
            st, metrics = step(st, batches[i % len(batches)])
            misses += int(jax.device_get(metrics["list_miss"]))
    r.pop("state", None)
    res = {
        "steps_per_s": sps,
        **(
            {"list_misses": misses, "list_checked_steps": 2 * timed_steps}
            if misses is not None
            else {}
        ),
        "flops_per_step": model_flops,
        "xla_flops_per_step": flops,
        "gflops": model_flops * sps / 1e9,
        "shape": f"D=N={dims['dim']}, {b} q x {dims['docs_per_query']} docs, "
        f"{dims['dim']}->{dims['dim'] // 2}, memory {dims['mem_size']}, k {dims['k']}",
        key: peak,
        **r,
    }
    print(
        f"train_step [{label}, D={dims['dim']}]: {sps:.2f} steps/s, {model_flops / 1e9:.2f} "
        f"GFLOP/step (XLA counts {flops / 1e9:.2f}), {res['gflops']:.1f} GFLOP/s achieved"
        + (f", full search in {misses} of {2 * timed_steps} steps" if misses is not None else "")
    )
    return res


def bench_retrieval(
    config, repeats: int, *, corpus_size: int = 1_000_000, num_queries=(256, 2048), **_
) -> dict:
    from smec_jax.core import retrieval

    del config
    n, dim = corpus_size, 768
    mesh = parallel.data_mesh() if jax.device_count() > 1 else None
    rng = np.random.default_rng(0)
    blocks = [
        rng.standard_normal((min(65536, n - i), dim), np.float32).astype(np.float16)
        for i in range(0, n, 65536)
    ]
    corpus = jnp.asarray(np.concatenate(blocks))
    del blocks
    print(
        f"retrieval: corpus {n:,} x {dim} float16 ({corpus.nbytes / 2**30:.2f} GiB), "
        f"{jax.device_count()} device(s)"
    )
    out = {"corpus": [n, dim], "dtype": "float16", "k": 100}
    for nq in num_queries:
        q = rng.standard_normal((nq, dim)).astype(np.float32)
        r = timed(
            lambda q=q: retrieval.search(q, corpus, 100, chunk=8192, query_batch=256, mesh=mesh),
            max(1, repeats // 2),
        )
        key, peak = peak_memory_bytes()
        out[str(nq)] = {"queries_per_s": nq / r["median_s"], key: peak, **r}
        print(f"  {nq} queries: {nq / r['median_s']:.1f} queries/s, {key} {peak / 2**30:.2f} GiB")
    return out


def bench_retrieval_codes(
    config, repeats: int, *, corpus_size: int = 1_000_000, num_queries=(256, 2048), **_
) -> dict:
    """Exact top-100 over corpus_size docs stored as 64-d int8 codes (uint8 on the device,
    float queries: asymmetric), as 256-d binary codes (packed bits, XOR + popcount) and as
    64-d int2 codes (16 bytes, the ``scan`` index: numpy on the host), next to
    ``retrieval``'s 768-d float16 corpus. Peak memory is the process's so far: run this
    benchmark alone (int8 is measured first)."""
    from smec_jax.core import codes, retrieval
    from smec_jax.serving import faiss_index

    del config
    n = corpus_size
    mesh = parallel.data_mesh() if jax.device_count() > 1 else None
    rng = np.random.default_rng(0)
    out = {"rows": n, "k": 100}
    vmin, vdiff = np.full(64, -0.5, np.float32), np.full(64, 1.0, np.float32)
    c8 = jnp.asarray(rng.integers(0, 256, size=(n, 64), dtype=np.uint8))
    packed = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    int2 = codes.calibrate(rng.standard_normal((4096, 64)).astype(np.float32), "int2")
    scan = faiss_index.PackedScan(rng.integers(0, 256, size=(n, 16), dtype=np.uint8), int2)
    for name, nbytes, search in (
        (
            "64d_int8",
            c8.nbytes,
            lambda q: retrieval.search_int8(
                q[:, :64], c8, vmin, vdiff, 100, chunk=8192, query_batch=256, mesh=mesh
            ),
        ),
        (
            "256d_binary",
            packed.nbytes,
            lambda q: retrieval.search(
                np.packbits(q[:, :256] > 0, axis=1, bitorder="little"),
                packed,
                100,
                metric="hamming",
                n_bits=256,
                chunk=8192,
                query_batch=256,
                mesh=mesh,
            ),
        ),
        ("64d_int2_scan", scan.packed.nbytes, lambda q: scan.search(q[:, :64], 100)),
    ):
        print(f"retrieval over {n:,} {name} codes ({nbytes / 2**20:.0f} MiB)")
        out[name] = {"corpus_bytes": nbytes}
        for nq in num_queries:
            q = rng.standard_normal((nq, 256)).astype(np.float32)
            r = timed(lambda q=q, search=search: search(q), max(1, repeats // 2))
            key, peak = peak_memory_bytes()
            out[name][str(nq)] = {"queries_per_s": nq / r["median_s"], key: peak, **r}
            print(
                f"  {nq} queries: {nq / r['median_s']:.1f} queries/s, {key} {peak / 2**30:.2f} GiB"
            )
    return out


BENCHES = {
    "eval": bench_eval,
    "retrieval_codes": bench_retrieval_codes,
    "retrieval": bench_retrieval,
    "matmul": bench_matmul,
    "train_step": bench_train_step,
}


def run_benchmarks(
    config,
    names: Sequence[str],
    *,
    repeats: int = 5,
    out: str | None = None,
    corpus_size: int = 1_000_000,
    num_queries: Sequence[int] = (256, 2048),
    shapes: Sequence[str] = ("768",),
    train_steps: int = 20,
    neighbour_modes: Sequence[str] = NEIGHBOUR_MODES,
) -> dict:
    """Runs the named benchmarks; writes the figures to ``out`` (JSON) when given."""
    methods.validate(config)
    unknown = (set(names) - set(BENCHES)) | {f"shape {x}" for x in shapes if x not in SHAPES}
    unknown |= {f"neighbour mode {m}" for m in neighbour_modes if m not in NEIGHBOUR_MODES}
    if unknown:
        raise ValueError(f"unknown benchmark(s) {sorted(unknown)}; known: {sorted(BENCHES)}")
    report = {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "cpu": platform.processor(),
    }
    for name in names:
        report[name] = BENCHES[name](
            config,
            repeats,
            corpus_size=corpus_size,
            num_queries=tuple(num_queries),
            shapes=tuple(shapes),
            train_steps=train_steps,
            neighbour_modes=tuple(neighbour_modes),
        )
    if out:
        files.write_json(out, report)
    return report


# ============================================================================ serving benchmarks


def _synthetic_npy(path, n: int, dim: int, seed: int = 0) -> None:
    """An (n, dim) float16 .npy of random unit rows, written in blocks (flat memory)."""
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
    for start in range(0, n, 65536):
        x = rng.standard_normal((min(65536, n - start), dim), np.float32)
        mm[start : start + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    mm.flush()


def _random_compressor(path, dim: int, sizes, seed: int = 0):
    from smec_jax.core.export import NestedCompressor, save

    w, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    comp = NestedCompressor(
        {"w": w.astype(np.float32), "b": np.zeros(dim, np.float32)}, np.arange(dim), tuple(sizes)
    )
    return save(comp, path)


# Peak memory of a process and of its workers, read from /proc (Linux): VmHWM is the peak
# resident set of the process's own address space. (getrusage's ru_maxrss is not: Linux
# carries it across fork and exec, so a child started by a large parent reports the
# parent's size.) Workers are sampled every 0.1 s while they live.
_PEAK_PROBE = """
import os, threading, time as _time
def _hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
    except (OSError, StopIteration):
        return 0
def _descendants(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out
_worker_peak = {}
def _sample():
    while True:
        for pid in _descendants(os.getpid()):
            _worker_peak[pid] = max(_worker_peak.get(pid, 0), _hwm(pid))
        _time.sleep(0.1)
threading.Thread(target=_sample, daemon=True).start()
"""


def _timed_processes(body: str, runs: int, rows: int) -> dict:
    """Runs the Python ``body`` (``{r}`` in it: the run's number) ``runs`` times, each in a
    fresh process: the median time, rows/s, and the peak resident memory of the process
    and of its largest child (a worker), each its own address space's (``_PEAK_PROBE``)."""
    import json as json_lib
    import subprocess
    import sys

    results = []
    for r in range(runs):
        code = (
            "import json, time\n"
            + _PEAK_PROBE
            + "t = time.perf_counter()\n"
            + body.format(r=r)
            + "print(json.dumps({'s': time.perf_counter() - t, 'rss': _hwm(os.getpid()), "
            "'child_rss': max(_worker_peak.values(), default=0)}))\n"
        )
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        results.append(json_lib.loads(res.stdout.strip().splitlines()[-1]))
    med = statistics.median(x["s"] for x in results)
    return {
        "rows_per_s": rows / med,
        "median_s": med,
        "peak_rss_bytes": max(x["rss"] for x in results),
        "peak_worker_rss_bytes": max(x["child_rss"] for x in results),
        "runs": len(results),
    }


def bench_compress(config, repeats: int, *, corpus_size: int = 1_000_000, **_) -> dict:
    """launch.compress on corpus_size x 768 float16 rows to 64-d int8 and 256-d binary, each
    run in a fresh process (rows/s and that process's peak RSS)."""
    import tempfile

    del config
    out: dict = {"rows": corpus_size, "input": "768-d float16"}
    with tempfile.TemporaryDirectory() as tmp:
        npy, npz = f"{tmp}/corpus.npy", f"{tmp}/c.npz"
        _synthetic_npy(npy, corpus_size, 768)
        _random_compressor(npz, 768, (768, 256, 64))
        for size, precision in ((64, "int8"), (256, "binary")):
            body = (
                "from smec_jax.serving import compress\n"
                f"compress.compress_embeddings({npz!r}, {npy!r}, '{tmp}/o{size}{{r}}', "
                f"size={size}, precision={precision!r}, verbose=False)\n"
            )
            key = f"{size}d_{precision}"
            out[key] = _timed_processes(body, max(1, repeats // 2), corpus_size)
            med = out[key]["median_s"]
            print(
                f"compress {corpus_size:,} x 768 -> {size}-d {precision}: "
                f"{corpus_size / med:,.0f} rows/s, peak RSS {out[key]['peak_rss_bytes'] / 2**30:.2f} GiB"
            )
    return out


def memory_bandwidth_gb_s(n_bytes: int = 1 << 30, repeats: int = 3) -> float:
    """Median copy rate of an ``n_bytes`` array (bytes read plus bytes written, per second)."""
    src = np.ones(n_bytes // 8, np.float64)
    dst = np.empty_like(src)
    r = timed(lambda: np.copyto(dst, src), repeats)
    return 2 * n_bytes / r["median_s"] / 1e9


def bench_compress_beam(config, repeats: int, *, corpus_size: int = 10_000_000, **_) -> dict:
    """``corpus_size`` random 768-d float16 rows to 64-d int8 codes, each run in a fresh
    process: ``launch.compress`` on one ``.npy``, and ``launch.compress_beam`` on the same
    rows in ``.npy`` shards of 1M rows (DirectRunner, 2 worker processes). Rows/s, peak
    resident memory (the launcher, and its largest worker: flat in the row count, set by
    the shard size), and the rows/s that the machine's memory bandwidth allows for reading
    each input row twice (calibration, then codes), which both do."""
    import tempfile

    del config
    n_shards = max(1, -(-corpus_size // 1_000_000))
    bw = memory_bandwidth_gb_s()
    row_bytes = 768 * 2
    out: dict = {
        "rows": corpus_size,
        "input": "768-d float16",
        "code": "64-d int8",
        "shards": n_shards,
        "memory_bandwidth_gb_s": bw,
        "bandwidth_rows_per_s_two_reads": bw * 1e9 / (2 * row_bytes),
    }
    print(f"memory bandwidth (copy): {bw:.1f} GB/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        npy, npz = f"{tmp}/corpus.npy", f"{tmp}/c.npz"
        _synthetic_npy(npy, corpus_size, 768)
        _random_compressor(npz, 768, (768, 256, 64))
        whole = np.load(npy, mmap_mode="r")
        bounds = np.linspace(0, corpus_size, n_shards + 1).astype(int)
        Path(f"{tmp}/shards").mkdir()
        for k in range(n_shards):
            a, b = bounds[k], bounds[k + 1]
            np.save(f"{tmp}/shards/part-{k:03d}.npy", whole[a:b])
            Path(f"{tmp}/shards/part-{k:03d}.ids.txt").write_text(
                "".join(f"{i}\n" for i in range(a, b))
            )
        del whole
        runs = {
            "launch_compress": (
                "from smec_jax.serving import compress\n"
                f"compress.compress_embeddings({npz!r}, {npy!r}, '{tmp}/o-{{r}}', size=64, "
                "precision='int8', verbose=False)\n"
            ),
            "beam_direct_2_workers": (
                "from smec_jax.serving import beam\n"
                f"beam.run('{tmp}/shards/part-*.npy', {npz!r}, '{tmp}/b-{{r}}', size=64, "
                "precision='int8', verbose=False, pipeline_args=['--direct_num_workers=2', "
                "'--direct_running_mode=multi_processing'])\n"
            ),
        }
        for name, body in runs.items():
            out[name] = v = _timed_processes(body, max(1, repeats // 2), corpus_size)
            med = v["median_s"]
            print(
                f"{name}: {corpus_size:,} rows in {med:.1f}s, {v['rows_per_s']:,.0f} rows/s "
                f"({v['rows_per_s'] / out['bandwidth_rows_per_s_two_reads']:.1%} of the "
                f"bandwidth bound), peak RSS {v['peak_rss_bytes'] / 2**30:.2f} GiB "
                f"(workers {v['peak_worker_rss_bytes'] / 2**30:.2f} GiB)",
                flush=True,
            )
    return out


def _sharded_int8_codes(folder: Path, n: int, dim: int, shard_rows: int, seed: int = 0):
    """A sharded codes folder (``launch.compress_beam``'s layout) of ``n`` int8 codes of
    ``dim``-d clustered unit rows (4,096 centres), ``shard_rows`` per ``.npy`` shard,
    written shard by shard. Returns 200 float queries (fresh rows of the same mixture) and
    the codes' calibration."""
    import dataclasses

    from smec_jax import files
    from smec_jax.core import codes
    from smec_jax.serving import codes_folder

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4096, dim)).astype(np.float32)

    def rows(m):
        x = centres[rng.integers(0, 4096, m)] + rng.standard_normal((m, dim), np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    cal = codes.calibrate(rows(65536), "int8")
    folder.mkdir(parents=True)
    shards = []
    for k, start in enumerate(range(0, n, shard_rows)):
        m = min(shard_rows, n - start)
        np.save(folder / f"part-{k:05d}.npy", codes.encode(rows(m), cal))
        (folder / f"part-{k:05d}.ids.txt").write_text(
            "".join(f"{i}\n" for i in range(start, start + m))
        )
        shards.append({"codes": f"part-{k:05d}.npy", "ids": f"part-{k:05d}.ids.txt", "rows": m})
    man = codes_folder.Manifest(
        compressor_sha256="benchmark", encoder="", input_dim=dim, size=dim, precision="int8",
        calibration=cal.to_json(), rows=n, bytes_per_vector=dim, part="corpus",
        source="synthetic", shards=shards,
    )  # fmt: skip
    files.write_json(folder / codes_folder.MANIFEST, dataclasses.asdict(man))
    return rows(200), cal


def _exact_top10(q: np.ndarray, folder: Path, cal) -> np.ndarray:
    """The rows of each query's 10 best inner products over a codes folder's decoded int8
    codes, read shard by shard."""
    from smec_jax.core import codes
    from smec_jax.serving import faiss_index, ivf

    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_r = np.zeros((len(q), 0), np.int64)
    for start, arr, _ in ivf.blocks(folder):
        top_s, top_c = faiss_index.top_k_by_row(q @ codes.decode(np.asarray(arr), cal).T, 10)
        s, r = np.concatenate([best_s, top_s], 1), np.concatenate([best_r, top_c + start], 1)
        order = np.argsort(-s, 1, kind="stable")[:, :10]
        best_s, best_r = np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1)
    return best_r


def _ivf_search(folder: Path, q: np.ndarray, exact_rows: np.ndarray) -> dict:
    """Queries/s (median of 3) and recall@10 against ``exact_rows`` of a built IVF index,
    its lists memory-mapped, at nprobe 16 and 64."""
    from smec_jax.serving import faiss_index

    index = faiss_index.load(folder).index
    out = {}
    for nprobe in (16, 64):
        index.nprobe = nprobe
        t = timed(lambda: index.search(q, 10), 3)  # noqa: B023  (called in this iteration)
        _, rows = index.search(q, 10)
        hits = [len(set(a) & set(b)) / 10 for a, b in zip(rows, exact_rows, strict=True)]
        out[f"nprobe_{nprobe}"] = {
            "queries_per_s": len(q) / t["median_s"],
            "recall@10": float(np.mean(hits)),
        }
    return out


def bench_ivf_index(
    config, repeats: int, *, corpus_size: int = 10_000_000, nlist: int = 1024, **_
) -> dict:
    """``launch.index --kind ivf_sq8`` (trained on a sample, filled shard by shard, merged
    on disk) over sharded 64-d int8 codes of 1M rows per shard, at a fifth of
    ``corpus_size`` and at ``corpus_size`` rows, each build in a fresh process: time, rows/s
    and peak resident memory (the heap holds one shard and the trained index; the merge
    maps the lists it writes), disk bytes; then 200 float
    queries searched memory-mapped at nprobe 16 and 64: queries/s and recall@10 against the
    exact scan of the same int8 codes."""
    import tempfile

    from smec_jax.serving import faiss_index

    del config
    out: dict = {"code": "64-d int8", "shard_rows": 1_000_000, "nlist": nlist}
    for n in (corpus_size // 5, corpus_size):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "codes"
            q, cal = _sharded_int8_codes(folder, n, 64, 1_000_000)
            body = (
                "from smec_jax.serving import ivf\n"
                f"ivf.build({str(folder)!r}, 'ivf_sq8', '{tmp}/idx-{{r}}', nlist={nlist}, "
                "verbose=False)\n"
            )
            v = _timed_processes(body, max(1, repeats // 2), n)
            idx = Path(tmp) / "idx-0"
            v["disk_bytes"] = faiss_index.disk_bytes(idx)
            exact_rows = _exact_top10(q, folder, cal)
            v |= _ivf_search(idx, q, exact_rows)
            out[str(n)] = v
            print(
                f"ivf_sq8 over {n:,} codes: built in {v['median_s']:.1f}s ({v['rows_per_s']:,.0f} "
                f"rows/s), peak RSS {v['peak_rss_bytes'] / 2**30:.2f} GiB, "
                f"{v['disk_bytes'] / 2**20:,.0f} MiB on disk; "
                + ", ".join(
                    f"nprobe {p}: {v[f'nprobe_{p}']['queries_per_s']:,.0f} q/s, recall@10 "
                    f"{v[f'nprobe_{p}']['recall@10']:.3f}"
                    for p in (16, 64)
                ),
                flush=True,
            )
    return out


def bench_faiss(config, repeats: int, *, corpus_size: int = 1_000_000, **_) -> dict:
    """Each faiss index kind next to the JAX exact search over the same codes: nDCG@10 on the
    configured dataset (compressed by its PCA, exported as a nested map), queries/s and
    bytes on disk; then queries/s over corpus_size random codes (HNSW: a tenth of them)."""
    import tempfile

    from smec_jax.core import retrieval
    from smec_jax.core.export import save
    from smec_jax.methods.closed_form import fit_pca_corpus
    from smec_jax.serving import compress as compress_lib
    from smec_jax.serving import faiss_index

    ds = sources.load(config.data)
    evaluator = Evaluator.from_config(ds, config.eval)
    dim = ds.dim
    setups = [
        ("flat", 64, "float32"),
        ("hnsw", 64, "float32"),
        ("sq8", 64, "int8"),
        ("binary", min(256, dim), "binary"),
    ]
    out: dict = {"dataset": ds.name, "encoder": ds.encoder, "compressor": "PCA (nested)"}
    with tempfile.TemporaryDirectory() as tmp:
        pca = fit_pca_corpus(ds.corpus).as_nested(
            sorted({dim, 256, 64} & set(range(1, dim + 1)), reverse=True)
        )
        npz = save(pca, f"{tmp}/pca.npz", encoder=ds.encoder)
        emb = f"{tmp}/emb"
        from smec_jax.datasets.data import write_embedding_folder

        write_embedding_folder(
            emb, ds.corpus_ids, ds.corpus, ds.query_ids, ds.queries, {"model": ds.encoder}
        )
        for kind, size, precision in setups:
            c = compress_lib.compress_embeddings(
                npz, emb, f"{tmp}/{kind}-c", size=size, precision=precision, verbose=False
            )
            qprec = "float32" if kind == "sq8" else None
            q = compress_lib.compress_embeddings(
                npz, emb, f"{tmp}/{kind}-q", part="queries", like=c, precision=qprec, verbose=False
            )
            index = faiss_index.build(c, kind)
            path = faiss_index.save(index, f"{tmp}/{kind}-i")
            q_arr, q_ids, q_man = codes_folder.load_codes(q)
            d_arr, d_ids, d_man = codes_folder.load_codes(c)
            sel = np.asarray([q_ids.index(x) for x in evaluator.qids])
            qa = np.asarray(q_arr[sel])
            f = timed(lambda qa=qa, index=index, q_man=q_man: index.search(qa, q_man, 100), repeats)
            s, r = index.search(qa, q_man, 100)
            f_ndcg = evaluator.summarize(
                evaluator.score_ranking(
                    faiss_index.ranked_by_trec_order(s, r, d_ids, evaluator.qids, 100)
                )
            )
            qd = codes.decode(qa, codes.Calibration.from_json(q_man.calibration))
            dd = codes.decode(np.asarray(d_arr), codes.Calibration.from_json(d_man.calibration))
            j = timed(
                lambda qd=qd, dd=dd: retrieval.search(
                    qd, dd, 100, metric="ip", tie_order=evaluator.tie_order
                ),
                repeats,
            )
            s, r = retrieval.search(qd, dd, 100, metric="ip", tie_order=evaluator.tie_order)
            j_ndcg = evaluator.summarize(
                evaluator.score_ranking([[d_ids[x] for x in row if x >= 0] for row in r])
            )
            key = f"{kind}_{size}d_{precision}"
            out[key] = {
                "ndcg@10_faiss": f_ndcg["ndcg@10"],
                "ndcg@10_jax": j_ndcg["ndcg@10"],
                "queries_per_s_faiss": len(sel) / f["median_s"],
                "queries_per_s_jax": len(sel) / j["median_s"],
                "bytes_on_disk": faiss_index.disk_bytes(path),
                "bytes_per_vector": d_man.bytes_per_vector,
            }
            v = out[key]
            print(
                f"faiss {key} on {ds.name}: nDCG@10 {v['ndcg@10_faiss']:.4f} (JAX {v['ndcg@10_jax']:.4f}), "
                f"{v['queries_per_s_faiss']:,.0f} q/s (JAX {v['queries_per_s_jax']:,.0f}), "
                f"{v['bytes_on_disk']:,} bytes on disk"
            )
    out["scale"] = _faiss_at_scale(corpus_size, repeats)
    return out


def _faiss_at_scale(n: int, repeats: int) -> dict:
    """Queries/s of each index kind over n random codes, 1,000 queries, top-100."""
    import faiss

    from smec_jax.core import retrieval

    rng = np.random.default_rng(0)
    nq = 1000
    out = {"rows": n, "queries": nq}
    x = rng.standard_normal((n, 64), np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((nq, 64), np.float32)
    cal = codes.calibrate(x[:200_000], "int8")
    flat = faiss.IndexFlatIP(64)
    flat.add(x)
    sq = faiss.IndexScalarQuantizer(64, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    faiss.copy_array_to_vector(np.concatenate([cal.vmin, cal.vdiff]), sq.sq.trained)
    sq.is_trained = True
    sq.add_sa_codes(codes.encode(x, cal))
    binary = faiss.IndexBinaryFlat(256)
    bcodes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    binary.add(bcodes)
    hn = max(1, n // 10)
    hnsw = faiss.IndexHNSWFlat(64, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction, hnsw.hnsw.efSearch = 80, 64
    t = time.perf_counter()
    hnsw.add(x[:hn])
    hnsw_build = time.perf_counter() - t
    bq = rng.integers(0, 256, size=(nq, 32), dtype=np.uint8)
    for name, fn in (
        ("flat_64d_float32", lambda: flat.search(q, 100)),
        ("sq8_64d_int8", lambda: sq.search(q, 100)),
        ("binary_256d", lambda: binary.search(bq, 100)),
        ("hnsw_64d_float32", lambda: hnsw.search(q, 100)),
        ("jax_exact_64d_float32", lambda: retrieval.search(q, x, 100, metric="ip")),
    ):
        r = timed(fn, max(1, repeats // 2))
        out[name] = {"queries_per_s": nq / r["median_s"], **r}
        rows = hn if name.startswith("hnsw") else n
        print(f"  {name}, {rows:,} rows: {nq / r['median_s']:,.0f} queries/s")
    out["hnsw_rows"], out["hnsw_build_s"] = hn, hnsw_build
    return out


def bench_learned_pq(config, repeats: int, *, corpus_size: int = 1_000_000, **_) -> dict:
    """Queries/s (1,000 queries, top-100, median of ``repeats``) over ``corpus_size`` random
    384-d unit rows of the learned product quantizer's faiss index
    (:func:`smec_jax.methods.pq.to_faiss`: a 384 -> 128 transform, then PQ at m bytes) against
    faiss's ``OPQm,PQm`` on the 384-d rows, at 16 and 32 B. The shapes decide the speed, not
    the centroids' values: both are trained on a 20,000-row sample (OPQ: 5 iterations)."""
    from smec_jax.methods import pq
    from smec_jax.serving import faiss_index

    faiss_index.faiss_module()  # a clear error where faiss is missing
    del config
    rng = np.random.default_rng(0)
    dim, d, nq = 384, 128, 1000

    def unit_rows(n):
        x = rng.standard_normal((n, dim), np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    x, q = unit_rows(corpus_size), unit_rows(nq)
    sample = x[:20_000]
    out: dict = {"rows": corpus_size, "queries": nq, "dim": dim, "learned_dim": d}
    for m in (16, 32):
        w, cent = pq.opq_init(sample, m, d, 0, 0)
        learned = pq.to_faiss(pq.LearnedPQ({m: w}, {m: cent}), m, x)
        opq = faiss_index.factory_index(sample, f"OPQ{m},PQ{m}", 0, opq_iterations=5)
        opq.reset()  # trained on the sample; holds the corpus alone
        opq.add(x)
        for name, index in ((f"learned_pq{m}_128d", learned), (f"opq{m}_pq{m}_384d", opq)):
            r = timed(lambda index=index: index.search(q, 100), repeats)
            out[name] = {"queries_per_s": nq / r["median_s"], "bytes_per_vector": m, **r}
            print(f"  {name}, {corpus_size:,} rows: {nq / r['median_s']:,.0f} queries/s")
        ratio = (
            out[f"learned_pq{m}_128d"]["queries_per_s"] / out[f"opq{m}_pq{m}_384d"]["queries_per_s"]
        )
        out[f"speedup_{m}B"] = ratio
        print(f"  {m} B: learned PQ / OPQ+PQ queries/s = {ratio:.2f}")
    return out


BENCHES["learned_pq"] = bench_learned_pq
BENCHES["torch_peer"] = bench_torch_peer
BENCHES["train_4096"] = bench_train_4096
BENCHES["compress"] = bench_compress
BENCHES["compress_beam"] = bench_compress_beam
BENCHES["faiss"] = bench_faiss
BENCHES["ivf_index"] = bench_ivf_index
