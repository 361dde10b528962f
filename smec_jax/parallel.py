"""Devices and hosts: meshes with one "data" axis, global batches, jax.distributed.

The batch and the corpus are sharded on the "data" axis; parameters are replicated.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding

DATA = "data"


def data_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named "data" over the first ``num_devices`` devices (default: all).

    Axes are ``Auto`` so that sharding mismatches are resolved by the compiler rather than
    raised, as explicit axes (JAX 0.10's default) would.
    """
    n = num_devices or jax.device_count()
    if n > jax.device_count():
        raise ValueError(f"asked for {n} devices but only {jax.device_count()} are visible")
    return jax.make_mesh((n,), (DATA,), axis_types=(AxisType.Auto,), devices=jax.devices()[:n])


def local_mesh() -> Mesh:
    """A "data" mesh over this process's devices only (host-side evaluation on every host)."""
    devs = jax.local_devices()
    return jax.make_mesh((len(devs),), (DATA,), axis_types=(AxisType.Auto,), devices=devs)


def put_batch(batch: dict, sharding: NamedSharding) -> dict:
    """Global batch arrays from this process's slice of each host batch (leading axis).

    Every host builds the same global batch; every array is sharded along its leading axis
    over the mesh's data axis, and process p feeds the p-th contiguous block, which is what
    its devices address.
    """
    n_proc, pid = jax.process_count(), jax.process_index()
    out = {}
    for k, v in batch.items():
        rows = v.shape[0] // n_proc
        local = np.ascontiguousarray(v[pid * rows : (pid + 1) * rows])
        out[k] = jax.make_array_from_process_local_data(sharding, local, v.shape)
    return out


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """jax.distributed.initialize(): auto-detected on TPU pods and Slurm, explicit otherwise.

    CPU processes talk through gloo collectives (a no-op setting on TPU/GPU).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    print(
        f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} "
        f"local of {jax.device_count()} devices",
        flush=True,
    )
