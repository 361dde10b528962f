"""Speed measurements: timers, the reference train step, its FLOP model, and the benchmarks.

Benchmarks (``python -m launch.benchmark --bench NAME``; medians of several runs):
  eval        scoring every ladder size of the configured dataset with truncation and PCA,
              after the embeddings are loaded and the methods fitted (warm-up compiles).
  matmul      this machine's float32 matmul peak with the same JAX build (square matmuls).
  retrieval   exact top-100 over a synthetic float16 corpus (default 1,000,000 x 768) in
              chunks, sharded over all devices: queries/s and peak memory for two query
              counts (memory must not grow with the number of queries).
  train_step  SMEC train steps/s and achieved GFLOP/s at the reference shape: D = N = 768,
              128 queries x 8 docs per batch, stage pair 768 -> 384, memory 5000, k = 10.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from smec_jax import files, memory, methods, parallel, smrl, sources, state
from smec_jax.evaluation import Evaluator
from smec_jax.train import make_train_step

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


def time_steps(step, st, batch, repeats: int) -> dict:
    """:func:`timed` runs of 10 train steps (the state is donated, so each run continues
    from the last one's output); ``median_s`` is per 10 steps."""
    holder = {"state": st}

    def run_steps(n=10):
        s = holder["state"]
        for _ in range(n):
            s, _ = step(s, batch)
        jax.block_until_ready(s)
        holder["state"] = s

    return timed(run_steps, repeats)


def peak_memory_bytes() -> tuple[str, int]:
    """Peak device memory on accelerators, peak process RSS on CPU."""
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return "device_peak_bytes", int(stats["peak_bytes_in_use"])
    import resource

    return "process_peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ============================================================================ the reference step


def reference_step(config, *, dim=768, batch_queries=128, docs_per_query=8, mem_size=5000, k=10):
    """A compiled stage-1 step (dim -> dim/2), its state and one batch at the given shape,
    memory full (random unit vectors: the starting point does not change the cost)."""
    cfg = config.copy_and_resolve_references()
    cfg.train.update(batch_queries=batch_queries, n_pos=2, n_hard=docs_per_query - 2)
    cfg.train.supervised = True
    cfg.memory.update(size=mem_size, k=k, enabled=True)
    cfg.model.init = "identity"
    sizes = (dim, dim // 2)
    mesh = parallel.data_mesh(cfg.mesh.num_devices or jax.device_count())
    rep = NamedSharding(mesh, P())
    st = jax.device_put(state.create_train_state(cfg, dim, dim, sizes), rep)
    rng = np.random.default_rng(0)
    c = batch_queries * docs_per_query
    unit = lambda n: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(
        rng.normal(size=(n, dim)).astype(np.float32)
    )
    grades = np.zeros((batch_queries, c), np.int32)
    pos_idx = np.zeros((batch_queries, 2), np.int32)
    for i in range(batch_queries):
        grades[i, i * docs_per_query] = 1
        pos_idx[i, 0] = i * docs_per_query
    batch = {
        "q": unit(batch_queries),
        "q_ids": np.arange(batch_queries, dtype=np.int32) + 10**6,
        "d": unit(c),
        "d_ids": np.arange(c, dtype=np.int32),
        "d_keep": np.ones(c, bool),
        "grades": grades,
        "valid": np.ones((batch_queries, c), bool),
        "pos_idx": pos_idx,
        "pos_ok": np.arange(2)[None, :].repeat(batch_queries, 0) == 0,
    }
    batch = parallel.put_batch(batch, NamedSharding(mesh, P(parallel.DATA)))
    mem = memory.enqueue(st.memory, jnp.asarray(unit(mem_size)), jnp.arange(mem_size) + 2 * 10**6)
    st = jax.device_put(st.replace(memory=mem), rep)
    step = make_train_step(smrl.make_stage(1, sizes, None), cfg, dim, mesh)
    return step, st, batch


def step_matmul_flops(mode: str, *, b=128, c=1024, dim=768, d=768, q=5000, k=10) -> float:
    """Matmul FLOPs of one reference step (forward + backward to the params), by hand.

    n = b + c samples. Forward: compress the batch (2 n D d), scores at two sizes
    (2 x 2 b c d), neighbour search (2 n Q D), neighbour compression ("memory": 2 Q D d,
    "gather": 2 n k D d), neighbour cosines (2 x 2 n k d). Backward to W only: the same
    compressions once more, scores and cosines twice. Matches XLA's CPU count within 2%;
    XLA's GPU count leaves out cuBLAS calls, so this is the figure to compare across devices.
    """
    n = b + c
    nbr = 2 * q * dim * d if mode == "memory" else 2 * n * k * dim * d
    fwd = 2 * n * dim * d + 2 * (2 * b * c * d) + 2 * n * q * dim + nbr + 2 * (2 * n * k * d)
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


def bench_train_step(config, repeats: int, **_) -> dict:
    """The reference step with each way of compressing memory neighbours."""
    out = {}
    for mode in ("memory", "gather"):
        cfg = config.copy_and_resolve_references()
        cfg.memory.neighbour_mode = mode
        out[mode] = _bench_one_step(cfg, repeats, mode)
    out["speedup_memory_vs_gather"] = out["memory"]["steps_per_s"] / out["gather"]["steps_per_s"]
    return out


def _bench_one_step(config, repeats: int, label: str) -> dict:
    step, st, batch = reference_step(config)
    flops = xla_flops(step, st, batch)
    r = time_steps(step, st, batch, repeats)
    sps = 10 / r["median_s"]
    model_flops = step_matmul_flops(label)
    res = {
        "steps_per_s": sps,
        "flops_per_step": model_flops,
        "xla_flops_per_step": flops,
        "gflops": model_flops * sps / 1e9,
        "shape": "D=N=768, 128 q x 8 docs, 768->384, memory 5000, k 10",
        **r,
    }
    print(
        f"train_step [{label}]: {sps:.2f} steps/s, {model_flops / 1e9:.2f} GFLOP/step "
        f"(XLA counts {flops / 1e9:.2f}), {res['gflops']:.1f} GFLOP/s achieved"
    )
    return res


def bench_retrieval(
    config, repeats: int, *, corpus_size: int = 1_000_000, num_queries=(256, 2048), **_
) -> dict:
    from smec_jax import retrieval

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


BENCHES = {
    "eval": bench_eval,
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
) -> dict:
    """Runs the named benchmarks; writes the figures to ``out`` (JSON) when given."""
    methods.validate(config)
    unknown = set(names) - set(BENCHES)
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
            config, repeats, corpus_size=corpus_size, num_queries=tuple(num_queries)
        )
    if out:
        files.write_json(out, report)
    return report
