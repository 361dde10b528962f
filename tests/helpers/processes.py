"""Several processes started together (a multi-process jax.distributed run on one machine).

:func:`run_together` takes the coordinator's port from the OS, gives each process a file for
its output (no pipe to fill and block), and when one process fails kills the others at once,
so a test never waits out the timeout on a sibling blocked on a dead peer. A run whose
coordinator could not bind the port (another program took it between the OS handing it out
and the coordinator binding it) is started again once on a fresh port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable


def free_port() -> int:
    """A port the OS says is free now."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_once(commands, env, timeout) -> tuple[list[int], list[str], int | None]:
    """(return codes, outputs, the process that failed first or None)."""
    logs = [tempfile.TemporaryFile(mode="w+") for _ in commands]
    procs = [
        subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        for cmd, log in zip(commands, logs, strict=True)
    ]
    deadline = time.monotonic() + timeout
    first_failed = None
    try:
        while any(p.poll() is None for p in procs):
            failed = [i for i, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                first_failed = failed[0] if failed else None
                break  # one failed (or time is up): stop the others now
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    outs = []
    for log in logs:
        log.seek(0)
        outs.append(log.read())
        log.close()
    if first_failed is None:
        first_failed = next((i for i, p in enumerate(procs) if p.returncode != 0), None)
    return [p.returncode for p in procs], outs, first_failed


def run_together(
    make_commands: Callable[[int], list[list[str]]],
    env: dict | None = None,
    timeout: float = 600,
) -> list[str]:
    """Runs ``make_commands(port)`` together; returns each process's output. Raises
    AssertionError naming the first process that failed (with its output's tail), or the
    timeout."""
    env = dict(os.environ if env is None else env)
    for attempt in (1, 2):
        codes, outs, failed = _run_once(make_commands(free_port()), env, timeout)
        busy = any("address already in use" in out.lower() for out in outs)
        if not (attempt == 1 and failed is not None and busy):
            break
    if failed is not None:
        raise AssertionError(
            f"process {failed} exited with {codes[failed]}; the others were stopped "
            f"({codes}):\n{outs[failed][-3000:]}"
        )
    assert all(c == 0 for c in codes), f"timed out after {timeout} s ({codes})"
    return outs
