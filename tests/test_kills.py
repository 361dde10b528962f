"""A killed process loses nothing: real ``launch.*`` processes are killed at exact places
(``SMEC_FAULT``, :mod:`smec_jax.interrupts`), rerun with the same command, and their outputs
compared byte for byte with an uninterrupted run's.

* ``launch.train``: SIGKILL inside the first asynchronous checkpoint save, SIGKILL between a
  checkpoint's delete and its save (the stage-closing save of a step saved mid-stage), and
  SIGTERM (preemption: saves, one line, status 143);
* ``launch.compress``: SIGKILL after a chunk is written but before it is recorded as done;
* ``launch.reproduce``: SIGKILL between two runs.
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from smec_jax import interrupts

pytestmark = pytest.mark.slow

TINY = ["--config", "configs/tiny.py"]


def launch(module, args, fault=None, sig="SIGKILL", timeout=600):
    env = dict(os.environ)
    env.pop(interrupts.FAULT, None)
    if fault:
        env[interrupts.FAULT], env[interrupts.FAULT_SIGNAL] = fault, sig
    return subprocess.run(
        [sys.executable, "-m", f"launch.{module}", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def same_files(a, b, names):
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    work = tmp_path_factory.mktemp("kills") / "whole"
    out = launch("train", [*TINY, f"--workdir={work}"])
    assert out.returncode == 0, out.stderr[-2000:]
    return work


# (fault point, signal, the status of the killed run); tiny: checkpoints at steps 4 and 8,
# stage 1 ends at step 8 (saved twice: mid-stage, then closed), 16 steps in all
TRAIN_FAULTS = [
    ("checkpoint-saving:4", "SIGKILL", -signal.SIGKILL),
    ("checkpoint-deleted:8", "SIGKILL", -signal.SIGKILL),
    ("train-step:6", "SIGTERM", interrupts.PREEMPTED_STATUS),
]


@pytest.mark.parametrize("fault,sig,status", TRAIN_FAULTS, ids=[f[0] for f in TRAIN_FAULTS])
def test_a_killed_training_reruns_to_the_same_bytes(uninterrupted, tmp_path, fault, sig, status):
    work = tmp_path / "run"
    killed = launch("train", [*TINY, f"--workdir={work}"], fault, sig)
    assert killed.returncode == status, killed.stderr[-2000:]
    assert not (work / "compressor.npz").exists()
    if sig == "SIGTERM":  # preemption: saved where it stopped, said so in one line
        assert killed.stderr.strip().splitlines()[-1] == (
            f"stopped: SIGTERM at step 6: saved a checkpoint of step 6 in {work}/checkpoints; "
            "rerun the same command to resume"
        )
        assert "6" in os.listdir(work / "checkpoints")
    again = launch("train", [*TINY, f"--workdir={work}"])
    assert again.returncode == 0, again.stderr[-2000:]
    same_files(uninterrupted, work, ["compressor.npz", "results.json"])


def test_a_killed_compression_reruns_to_the_same_bytes(uninterrupted, tmp_path):
    x = np.random.default_rng(0).normal(size=(1000, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = [
        f"--compressor={uninterrupted / 'compressor.npz'}", f"--input={tmp_path / 'x.npy'}",
        "--size=16", "--precision=int8", "--chunk=128",
    ]  # fmt: skip
    whole = launch("compress", [*args, f"--out={tmp_path / 'whole'}"])
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "codes"
    killed = launch("compress", [*args, f"--out={out}"], "compress-chunk-written:3")
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists() and (tmp_path / "codes.partial").is_dir()  # nothing half-final
    again = launch("compress", [*args, f"--out={out}"])
    assert again.returncode == 0, again.stderr[-2000:]
    same_files(tmp_path / "whole", out, ["codes.npy", "ids.txt", "manifest.json"])
    assert not (tmp_path / "codes.partial").exists()


def test_a_reproduction_killed_between_runs_reruns_to_the_same_report(tmp_path):
    args = [*TINY, "--methods=pca,smec", "--seeds=0"]  # pca once, then smec: killed between
    whole = launch("reproduce", [*args, f"--workdir={tmp_path / 'whole'}"])
    assert whole.returncode == 0, whole.stderr[-2000:]
    work = tmp_path / "killed"
    killed = launch("reproduce", [*args, f"--workdir={work}"], "reproduce-run-done:1")
    assert killed.returncode == -signal.SIGKILL
    again = launch("reproduce", [*args, f"--workdir={work}"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[2/2] smec seed 0" in again.stdout  # the finished run was read, not retrained
    names = sorted(p.name for p in (tmp_path / "whole").iterdir() if p.is_file())
    assert "results.json" in names
    same_files(tmp_path / "whole", work, names)
