"""Test set-up: 8 simulated CPU devices, set before JAX is imported anywhere."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from smec_jax.datasets.data import default_data_root  # noqa: E402

assert jax.device_count() == 8, "XLA_FLAGS was set too late: JAX sees fewer than 8 devices"

SCIFACT = Path(default_data_root()) / "scifact"


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
