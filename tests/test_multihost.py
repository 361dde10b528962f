"""Two processes x 4 CPU devices (jax.distributed, gloo) train exactly like one process with
8 devices, and checkpoints move between the two layouts (one flow, one helper that stops
every process when one fails)."""

import sys
import time

import jax
import numpy as np
import pytest

from smec_jax.core import retrieval
from smec_jax.datasets import sources
from smec_jax.training import train
from tests.helpers import tiny_config
from tests.helpers.processes import run_together


def run_two_processes(out_dir, workdir="-", restore_only=False):
    def commands(port):
        return [
            [
                sys.executable,
                "-m",
                "tests.helpers.multihost_worker",
                str(i),
                "2",
                str(port),
                str(out_dir),
                str(workdir),
                *(["restore-only"] if restore_only else []),
            ]
            for i in range(2)
        ]

    run_together(commands)
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
def eight_devices(tmp_path_factory):
    """One process, 8 devices, checkpoints in its workdir (restored by two processes below)."""
    workdir = tmp_path_factory.mktemp("by_one")
    return workdir, one_process(workdir)


@pytest.mark.slow
def test_two_processes_train_like_one_and_checkpoints_cross_between_layouts(
    tmp_path, eight_devices
):
    by_one, eight = eight_devices
    # two processes x 4 devices train what one process with 8 devices trains
    two = run_two_processes(tmp_path, tmp_path / "by_two")
    np.testing.assert_array_equal(two["order"], eight["order"])
    for k in ("w", "b"):
        np.testing.assert_allclose(two[k], eight[k], rtol=1e-5, atol=1e-6)
    # retrieval over a corpus sharded across both processes == one device
    cfg = tiny_config()
    ds = sources.load(cfg.data)
    s1, i1 = retrieval.search(ds.queries[:50], ds.corpus, 20, chunk=16)
    np.testing.assert_array_equal(two["search_rows"], i1)
    np.testing.assert_allclose(two["search_scores"], s1, atol=1e-6)
    # written by two processes, restored by one (the run is finished: restore, no training)
    restored = one_process(tmp_path / "by_two", restore_only=True)
    for k in ("w", "b"):
        np.testing.assert_allclose(restored[k], eight[k], rtol=1e-5, atol=1e-6)
    # written by one process, restored by two
    (tmp_path / "out").mkdir()
    two = run_two_processes(tmp_path / "out", by_one, restore_only=True)
    for k in ("w", "b"):
        np.testing.assert_allclose(two[k], eight[k], rtol=1e-5, atol=1e-6)


def test_a_failed_process_stops_its_siblings_at_once():
    start = time.monotonic()
    with pytest.raises(AssertionError, match="process 0 exited with 3; the others were stopped"):
        run_together(
            lambda port: [
                [sys.executable, "-c", "import sys; sys.exit(3)"],
                [sys.executable, "-c", "import time; time.sleep(120)"],
            ]
        )
    assert time.monotonic() - start < 30
