"""Dry run of the pod launch on CPU: `python -m launch.train --config configs/tpu_pod.py`
as 2 processes x 4 devices, shrunk to the tiny synthetic data."""

import json
import os
import subprocess
import sys

from tests.helpers import tiny_flags
from tests.test_multihost import _free_port

SHRINK = tiny_flags()


def test_pod_config_runs_as_two_processes(tmp_path):
    port = str(_free_port())
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    procs = [
        subprocess.Popen(
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
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    assert "process 0/2: 4 local of 8 devices" in outs[0]
    assert "process 1/2: 4 local of 8 devices" in outs[1]
    assert "steps/s" in outs[0] and "steps/s" not in outs[1]  # one progress display
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc["results"]) == {"truncate", "pca", "smec"}
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
