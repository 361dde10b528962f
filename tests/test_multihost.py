"""The pod launch (`python -m launch.train --config configs/tpu_pod.py`) as 2 processes x 4
CPU devices (jax.distributed, gloo), shrunk to the tiny synthetic data, trains exactly what
one process with 8 devices trains from the same config, and checkpoints move between the
two layouts. One flow: one two-process training, one one-process training, and restores
both ways; one helper that stops every process when one fails."""

import json
import os
import sys
import time

import jax
import numpy as np
import pytest

from smec_jax.core import export, retrieval
from smec_jax.datasets import sources
from smec_jax.training import train
from tests.helpers import pod_config, tiny_flags
from tests.helpers.processes import run_together

FOUR_DEVICES = dict(
    os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
)


def pod_launch(workdir) -> list[str]:
    """launch.train with the pod config file, shrunk by flags, as two processes."""

    def commands(port):
        return [
            [
                sys.executable,
                "-m",
                "launch.train",
                "--config",
                "configs/tpu_pod.py",
                "--workdir",
                str(workdir),
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                *tiny_flags(),
            ]  # fmt: skip
            for i in range(2)
        ]

    return run_together(commands, FOUR_DEVICES)


def two_processes_restore(out_dir, workdir):
    """tests/helpers/multihost_worker.py as two processes restoring a finished run (any
    training step fails them), then searching a corpus sharded over both."""

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
                "restore-only",
            ]  # fmt: skip
            for i in range(2)
        ]

    run_together(commands)
    with np.load(out_dir / "params.npz") as f:
        return {k: f[k] for k in f.files}


def _no_steps(step):
    raise AssertionError(f"trained step {step} instead of restoring a finished run")


def one_process(workdir, restore_only=False):
    """The pod config in this process, over its 8 devices."""
    cfg = pod_config()
    assert jax.device_count() == 8
    res = train.train(
        cfg,
        sources.load(cfg.data),
        workdir,
        verbose=False,
        on_step=_no_steps if restore_only else None,
    )
    return {"order": res.compressor.order, **res.compressor.params}, res.compressor


@pytest.mark.slow
def test_the_pod_launch_trains_like_one_process_and_checkpoints_cross_between_layouts(
    tmp_path,
):
    by_one, by_two = tmp_path / "by_one", tmp_path / "by_two"
    eight, compressor = one_process(by_one)
    # the pod launch: two processes x 4 devices, one progress display, the usual outputs
    outs = pod_launch(by_two)
    assert "process 0/2: 4 local of 8 devices" in outs[0]
    assert "process 1/2: 4 local of 8 devices" in outs[1]
    assert "steps/s" in outs[0] and "steps/s" not in outs[1]
    doc = json.loads((by_two / "results.json").read_text())
    assert set(doc["results"]) == {"truncate", "pca", "smec"}
    assert sorted(p.name for p in (by_two / "checkpoints").iterdir() if p.name.isdigit())
    # ... trains what one process with 8 devices trains (the exported, permuted parameters)
    pod = export.load_numpy(by_two / "compressor.npz")
    one = compressor.permuted_params()
    for k in ("w", "b"):
        np.testing.assert_allclose(pod[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # written by two processes, restored by one (the run is finished: restore, no training)
    restored, _ = one_process(by_two, restore_only=True)
    np.testing.assert_array_equal(restored["order"], eight["order"])
    for k in ("w", "b"):
        np.testing.assert_allclose(restored[k], eight[k], rtol=1e-5, atol=1e-6)
    # written by one process, restored by two
    (tmp_path / "out").mkdir()
    two = two_processes_restore(tmp_path / "out", by_one)
    np.testing.assert_array_equal(two["order"], eight["order"])
    for k in ("w", "b"):
        np.testing.assert_allclose(two[k], eight[k], rtol=1e-5, atol=1e-6)
    # retrieval over a corpus sharded across both processes == one device
    ds = sources.load(pod_config().data)
    s1, i1 = retrieval.search(ds.queries[:50], ds.corpus, 20, chunk=16)
    np.testing.assert_array_equal(two["search_rows"], i1)
    np.testing.assert_allclose(two["search_scores"], s1, atol=1e-6)


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
