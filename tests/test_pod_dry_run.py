"""Dry run of the pod launch on CPU: `python -m launch.train --config configs/tpu_pod.py`
as 2 processes x 4 devices, shrunk to the tiny synthetic data, trains what one process
with 8 devices trains from the same config."""

import json
import os
import sys

import numpy as np
import pytest

from configs import tpu_pod
from smec_jax import methods
from smec_jax.core import export
from smec_jax.datasets import sources
from smec_jax.training import train
from tests.helpers import tiny_flags, tiny_overrides
from tests.helpers.processes import run_together

SHRINK = tiny_flags()


@pytest.mark.slow
def test_pod_config_runs_as_two_processes(tmp_path):
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )

    def commands(port):
        return [
            [
                sys.executable,
                "-m",
                "launch.train",
                "--config",
                "configs/tpu_pod.py",
                "--workdir",
                str(tmp_path),
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                *SHRINK,
            ]
            for i in range(2)
        ]

    outs = run_together(commands, env)
    assert "process 0/2: 4 local of 8 devices" in outs[0]
    assert "process 1/2: 4 local of 8 devices" in outs[1]
    assert "steps/s" in outs[0] and "steps/s" not in outs[1]  # one progress display
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc["results"]) == {"truncate", "pca", "smec"}
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    # the same config in one process over this session's 8 devices
    cfg = methods.apply_overrides(tpu_pod.get_config(), tiny_overrides())
    one = train.train(cfg, sources.load(cfg.data), verbose=False).compressor.permuted_params()
    pod = export.load_numpy(tmp_path / "compressor.npz")
    for k in ("w", "b"):
        np.testing.assert_allclose(pod[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
