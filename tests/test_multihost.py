"""Two processes x 4 CPU devices (jax.distributed, gloo) train exactly like one process with
8 devices, and checkpoints move between the two layouts."""

import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from smec_jax.core import retrieval
from smec_jax.datasets import sources
from smec_jax.training import train
from tests.helpers import tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_two_processes(out_dir, workdir="-", restore_only=False):
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.helpers.multihost_worker",
                str(i),
                "2",
                port,
                str(out_dir),
                str(workdir),
                *(["restore-only"] if restore_only else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]
    with np.load(out_dir / "params.npz") as f:
        return {k: f[k] for k in f.files}


def _no_steps(step):
    raise AssertionError(f"trained step {step} instead of restoring a finished run")


def one_process(workdir=None, restore_only=False):
    cfg = tiny_config()
    assert jax.device_count() == 8
    res = train.train(
        cfg,
        sources.load(cfg.data),
        workdir,
        verbose=False,
        on_step=_no_steps if restore_only else None,
    )
    return {"order": res.compressor.order, **res.compressor.params}


@pytest.fixture(scope="module")
def eight_devices():
    return one_process()


def test_two_processes_match_one_process_with_eight_devices(tmp_path, eight_devices):
    two = run_two_processes(tmp_path)
    np.testing.assert_array_equal(two["order"], eight_devices["order"])
    for k in ("w", "b"):
        np.testing.assert_allclose(two[k], eight_devices[k], rtol=1e-5, atol=1e-6)
    # retrieval over a corpus sharded across both processes == one device
    cfg = tiny_config()
    ds = sources.load(cfg.data)
    s1, i1 = retrieval.search(ds.queries[:50], ds.corpus, 20, chunk=16)
    np.testing.assert_array_equal(two["search_rows"], i1)
    np.testing.assert_allclose(two["search_scores"], s1, atol=1e-6)


def test_checkpoints_cross_between_layouts(tmp_path, eight_devices):
    # written by two processes, restored by one (the run is finished: restore, no training)
    run_two_processes(tmp_path, tmp_path / "by_two")
    restored = one_process(tmp_path / "by_two", restore_only=True)
    for k in ("w", "b"):
        np.testing.assert_allclose(restored[k], eight_devices[k], rtol=1e-5, atol=1e-6)
    # written by one process, restored by two
    one_process(tmp_path / "by_one")
    (tmp_path / "out").mkdir()
    two = run_two_processes(tmp_path / "out", tmp_path / "by_one", restore_only=True)
    for k in ("w", "b"):
        np.testing.assert_allclose(two[k], eight_devices[k], rtol=1e-5, atol=1e-6)
