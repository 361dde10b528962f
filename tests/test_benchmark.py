"""The benchmark's hand count of train-step FLOPs agrees with XLA's count of the compiled step."""

import pytest

from configs import default as default_config
from smec_jax.studies import profiling


@pytest.mark.parametrize("mode", ["memory", "gather"])
def test_step_flop_model_matches_xla_cpu_count(mode):
    cfg = default_config.get_config()
    cfg.memory.neighbour_mode = mode
    cfg.mesh.num_devices = 1
    dims = dict(dim=256, batch_queries=32, docs_per_query=8, mem_size=1000, k=10)
    step, state, batch = profiling.reference_step(cfg, **dims)
    xla = profiling.xla_flops(step, state, batch)
    model = profiling.step_matmul_flops(mode, b=32, c=256, dim=256, d=256, q=1000, k=10)
    # the rest (softplus over pairs, norms, top-k) is a few percent at this size
    assert abs(model - xla) / xla < 0.08, (model, xla)


def test_list_mode_counts_the_search_out_but_compiles_the_fallback():
    """The list mode's hand count leaves out the 2 n Q D search; XLA counts both branches
    of the fallback (list, then search), so its count lies above the hand count."""
    cfg = default_config.get_config()
    cfg.memory.neighbour_mode = "list"
    cfg.mesh.num_devices = 1
    dims = dict(dim=256, batch_queries=32, docs_per_query=8, mem_size=1000, k=10)
    step, state, batch = profiling.reference_step(cfg, **dims)
    xla = profiling.xla_flops(step, state, batch)
    shape = dict(b=32, c=256, dim=256, d=256, q=1000, k=10)
    listed = profiling.step_matmul_flops("list", **shape)
    assert profiling.step_matmul_flops("memory", **shape) - listed == 2 * (32 + 256) * 1000 * 256
    assert listed < xla


def test_peak_memory_window_sees_an_allocation_and_resets_after_it():
    """On Linux the CPU peak RSS is a window: 300 MB touched raise it by about that much, and
    after reset_peak_memory (once they are freed) the peak is back below that, so each part
    of a benchmark reports its own peak rather than the process's largest so far."""
    import sys

    import numpy as np

    if not sys.platform.startswith("linux"):
        pytest.skip("the peak RSS window needs Linux's /proc/self/clear_refs")
    profiling.reset_peak_memory()
    _, before = profiling.peak_memory_bytes()
    a = np.ones(300_000_000 // 8)
    _, during = profiling.peak_memory_bytes()
    del a
    profiling.reset_peak_memory()
    _, after = profiling.peak_memory_bytes()
    assert during - before > 250_000_000
    assert after < during - 250_000_000
