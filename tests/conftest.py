"""Test set-up: 8 simulated CPU devices and a persistent compilation cache, both set before
JAX is imported anywhere (and inherited by the processes the tests start); under
``SMEC_STRICT_SKIPS=1`` (CI) a skipped test fails: missing data or a missing serving package
must not pass silently."""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Compile once: the many tiny trainings build the same programs again (a fresh jit closure
# per stage and per training); the persistent cache keys them by their HLO, so each is
# compiled once per machine. Small CPU programs are cached too (thresholds 0).
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "smec-jax-test-xla-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
STRICT_SKIPS = os.environ.get("SMEC_STRICT_SKIPS") == "1"

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from smec_jax.datasets.data import default_data_root  # noqa: E402

assert jax.device_count() == 8, "XLA_FLAGS was set too late: JAX sees fewer than 8 devices"

SCIFACT = Path(default_data_root()) / "scifact"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under SMEC_STRICT_SKIPS=1 a skip is a failure that says what was missing."""
    outcome = yield
    report = outcome.get_result()
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under SMEC_STRICT_SKIPS=1, where everything must run: {reason}"


@pytest.fixture(scope="session")
def scifact_minilm():
    """The real SciFact / all-MiniLM-L6-v2 data, or a skip where the data folder is absent."""
    if not (SCIFACT / "embeddings" / "all-MiniLM-L6-v2").is_dir():
        pytest.skip(f"real data not found at {SCIFACT} (set SMEC_DATA_DIR)")
    from smec_jax.datasets.data import load_embedded

    return load_embedded(SCIFACT, "all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def synthetic():
    """The tiny config's generated dataset (configs/tiny.py)."""
    from configs import tiny
    from smec_jax.datasets import sources

    return sources.load(tiny.get_config().data)
