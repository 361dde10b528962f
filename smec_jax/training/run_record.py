"""Which run a workdir holds: only the same run resumes.

The trainer writes ``run_config.json`` into a workdir before its first checkpoint: every
resolved config field and a fingerprint of the data. A rerun that finds checkpoints compares
its own record with it and refuses, in one line naming the differing fields, to resume
under another configuration or other data: restoring a checkpoint and training on under
new settings would give a model that matches neither run. Fields that cannot change what is
trained (logging and checkpoint cadence, steps per dispatch, what is scored at the end, the
device layout) may differ: :data:`RESUME_SAFE`. A workdir written before records existed
resumes as it did (its shapes are still checked by the restore), and a field added since
the record was written matches when it is at its default.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from smec_jax import files
from smec_jax.datasets.data import RetrievalData
from smec_jax.training import checks

RECORD = "run_config.json"
# Fields a resumed run may change: none of them changes a trained value (steps per dispatch
# train bit-identically; 1 and 8 devices, one or several processes, train alike).
RESUME_SAFE = frozenset(
    {
        "train.log_every",
        "train.ckpt_every",
        "train.steps_per_call",
        "eval.methods",
        "eval.split",
        "eval.verdict_size",
        "auto.budget_bytes",  # how auto scores its candidates, not how they train
        "mesh.num_devices",
        "distributed",
        "data.root",  # where the data lives; what it is, is the data fingerprint's
    }
)
_SAMPLE_ROWS = 1024


def data_fingerprint(data: RetrievalData) -> dict:
    """The corpus a run trains on: its name, encoder, size, dimension, and a digest of its
    ids and of evenly spaced rows (cheap at any size; re-embedded or reordered data differs)."""
    n = len(data.corpus_ids)
    rows = np.unique(np.linspace(0, n - 1, min(n, _SAMPLE_ROWS)).astype(np.int64))
    h = hashlib.sha256("\n".join(data.corpus_ids).encode())
    h.update(np.ascontiguousarray(np.asarray(data.corpus[rows], np.float32)).tobytes())
    return {"name": data.name, "encoder": data.encoder, "docs": n, "dim": data.dim, "sha256": h.hexdigest()}  # fmt: skip


def record(cfg, data: RetrievalData) -> dict:
    """Every config field (JSON values) and the data fingerprint."""
    fields = json.loads(json.dumps(checks.fields(cfg)))  # tuples as lists, as read back
    return {"config": fields, "data": data_fingerprint(data)}


def _shown(v) -> str:
    return json.dumps(v) if not isinstance(v, str) else repr(v)


def differences(old: dict, new: dict) -> list[str]:
    """``field old -> new`` for each field that differs and may not (data first)."""
    out = []
    if old.get("data") != new["data"]:
        a, b = old.get("data") or {}, new["data"]
        what = [k for k in b if a.get(k) != b[k]]
        out.append(f"data ({', '.join(what)} differ: {a.get('name')!r} -> {b['name']!r})")
    oc, nc = old.get("config", {}), new["config"]
    added = _defaults() if any(f not in oc for f in nc) else {}
    for f in [*nc, *(f for f in oc if f not in nc)]:
        if f in RESUME_SAFE or oc.get(f) == nc.get(f):
            continue
        if f not in oc and nc[f] == added.get(f):  # a field newer than the record, at its default
            continue
        out.append(f"{f} {_shown(oc.get(f))} -> {_shown(nc.get(f))}")
    return out


def _defaults() -> dict:
    """Every field of ``configs/default.py`` at its default (JSON values)."""
    from configs import default

    return json.loads(json.dumps(checks.fields(default.get_config())))


def check(workdir: str | Path, rec: dict) -> None:
    """Raises ValueError (one line) if the record in ``workdir``, whose checkpoints a run is
    about to resume, differs from ``rec`` in a field that may not change. Writes nothing."""
    path = Path(workdir) / RECORD
    if not path.is_file():
        return  # written before records existed
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a run record ({e}); use another --workdir") from None
    diff = differences(old, rec)
    if diff:
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise ValueError(
            f"{workdir} holds a run with other settings ({'; '.join(diff[:4])}{more}); "
            "rerun it with the settings it was started with, or use another --workdir"
        )


def write(workdir: str | Path, rec: dict) -> None:
    """Records ``rec`` for a run starting in ``workdir`` (before its first checkpoint)."""
    files.write_json(Path(workdir) / RECORD, rec)
