"""Stopping well: SIGTERM (preemption) as a request to save and exit, and the fault points
the kill tests use.

* :func:`on_sigterm`: while active (main thread, one process), SIGTERM sets a flag instead
  of killing the process; the trainer checks it between dispatches, saves a checkpoint and
  raises :class:`Preempted`, which the launchers turn into one line and exit status 143.
  Rerunning the same command resumes, as after any interruption.
* :func:`point`: ``SMEC_FAULT=<name>:<key>`` in the environment sends this process
  ``SMEC_FAULT_SIGNAL`` (default SIGKILL) when the named point is reached with that key (a
  step, a chunk, a run): the tests kill real processes at exact places (inside an
  asynchronous checkpoint save, between a checkpoint's delete and its save, mid-chunk).
  Unset, a point is one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

FAULT = "SMEC_FAULT"
FAULT_SIGNAL = "SMEC_FAULT_SIGNAL"
PREEMPTED_STATUS = 128 + signal.SIGTERM  # what a shell reports for a SIGTERM'd process


class Preempted(Exception):
    """Stopped on SIGTERM after saving; the message says where and how to resume."""


class _Flag:
    requested = False


def point(name: str, key) -> None:
    """A fault point: signals this process if ``SMEC_FAULT`` names ``name:key``."""
    spec = os.environ.get(FAULT)
    if spec and spec == f"{name}:{key}":
        os.kill(os.getpid(), getattr(signal, os.environ.get(FAULT_SIGNAL, "SIGKILL")))


@contextlib.contextmanager
def on_sigterm():
    """A flag that SIGTERM sets while the block runs (only in the main thread of a
    single-process run; elsewhere SIGTERM keeps its default meaning and the flag stays
    False)."""
    flag = _Flag()
    import jax

    if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
        yield flag
        return

    def handler(signum, frame):
        del signum, frame
        flag.requested = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
