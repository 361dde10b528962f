"""Atomic file writes: every file a command writes appears whole or not at all.

Each writer goes through a temporary file in the target's folder and one ``os.replace``,
so an interrupted command never leaves half a ``results.json``, plot or compressor behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` if the block succeeds.

    ``suffix`` keeps the extension for writers that infer the format from it (matplotlib).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_workdir(path: str | Path | None, flag: str = "--workdir") -> None:
    """Refuses an output folder that is an existing file (before anything is computed)."""
    if path is None or str(path) == "":
        raise ValueError(f"{flag} is required: the folder the outputs go to")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p} is an existing file; give a folder (new or existing)")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{flag} {p}: {parent} is a file, not a folder")
            break


def atomic_write(path: str | Path, payload: bytes | str) -> Path:
    """Writes bytes (or UTF-8 text) to ``path`` atomically."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any, indent: int = 1) -> Path:
    """Writes ``obj`` as JSON (plus a final newline) atomically."""
    return atomic_write(path, json.dumps(obj, indent=indent) + "\n")
