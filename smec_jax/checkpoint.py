"""Checkpoints: the one module that talks to orbax, so an API change touches one file.

A checkpoint holds a whole pytree (train state with memory and RNG, plus the stage's
early-stopping record), saved with ``StandardSave`` and restored into an abstract tree that
carries the target shardings, so a checkpoint written on one device count restores on
another. orbax writes into a temporary folder and renames it when complete: an interrupted
save never replaces the last good checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from smec_jax import interrupts


class Checkpointer:
    """A thin wrapper around ``ocp.CheckpointManager`` for one pytree."""

    def __init__(self, directory: str | Path, max_to_keep: int = 2):
        self.directory = Path(directory)
        self._mngr = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, step: int, tree: Any) -> None:
        """Saves ``tree`` as ``step``, replacing a checkpoint of the same step (a stage that
        ends on a checkpoint step saves twice: mid-stage, then with the stage closed)."""
        if step in self._mngr.all_steps():
            self._mngr.wait_until_finished()
            self._mngr.delete(step)
            interrupts.point("checkpoint-deleted", step)  # the kill tests' window
        self._mngr.save(step, args=ocp.args.StandardSave(tree), force=True)
        interrupts.point("checkpoint-saving", step)  # the asynchronous save in flight

    def restore(self, target: Any, step: int | None = None) -> Any:
        """Restores into the structure, shapes, dtypes and shardings of ``target``."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
            target,
        )
        try:
            return self._mngr.restore(step, args=ocp.args.StandardRestore(abstract))
        except ValueError as e:
            if "stored shape" not in str(e):
                raise
            raise ValueError(
                f"{self.directory}: step {step} was saved with other array shapes than this "
                "config's (another memory size, model or ladder?); resume with the config that "
                "wrote it, or use a fresh --workdir"
            ) from None

    def reached_preemption(self, step: int) -> bool:
        return self._mngr.reached_preemption(step)

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()
