"""Device meshes: one "data" axis over every device (batch and corpus are sharded on it)."""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh

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
