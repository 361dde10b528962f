"""What every launcher shares: the --config/--workdir flags and one-line errors.

A launcher (``launch/*.py``) is flags plus one library call::

    cli.define_config_and_workdir("runs/x")
    flags.DEFINE_...(...)
    if __name__ == "__main__":
        cli.run_main(lambda: library.job(FLAGS.config, FLAGS.workdir, ...))
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from smec_jax.data import DataError

DEFAULT_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "default.py")


def define_config_and_workdir(workdir_default: str | None = None) -> None:
    """Defines --config and --workdir once per process (several launchers may be imported)."""
    if "config" in flags.FLAGS:
        return
    config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Config file (configs/*.py); fields overridable as --config.x=y."
    )
    flags.DEFINE_string("workdir", workdir_default, "Directory for outputs (results, plots).")


def run_main(fn: Callable[[], object]) -> None:
    """``app.run`` (flag parsing) around ``fn``, with one-line errors (see :func:`guarded`)."""
    from absl import app

    def main(argv):
        del argv
        guarded(fn)

    app.run(main)


def guarded(main: Callable[[], object]) -> None:
    """Runs ``main``; bad input ends the program with one clear line and exit status 2, a
    non-finite loss with exit status 3."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("absl", "jax._src.xla_bridge", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        main()
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
