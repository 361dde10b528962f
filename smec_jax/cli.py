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

from smec_jax import interrupts
from smec_jax.datasets.data import DataError

DEFAULT_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "default.py")


def define_config_and_workdir(workdir_default: str | None = None) -> None:
    """Defines --config and --workdir once per process (several launchers may be imported)."""
    if "config" in flags.FLAGS:
        return
    config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Config file (configs/*.py); fields overridable as --config.x=y."
    )
    flags.DEFINE_string("workdir", workdir_default, "Directory for outputs (results, plots).")


def define_distributed_flags() -> None:
    """--coordinator_address / --num_processes / --process_id for multi-process runs off
    TPU pods and Slurm (where ``jax.distributed.initialize()`` cannot detect them)."""
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
    flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def run_main(fn: Callable[[], object]) -> None:
    """``app.run`` (flag parsing) around ``fn``, with one-line errors (see :func:`guarded`);
    a bad flag (an unknown config field, a value of the wrong type) is one line too."""
    from absl import app

    def main(argv):
        if len(argv) > 1:
            _fail(f"unexpected argument {argv[1]!r}; flags look like --name=value")
        if "config" in flags.FLAGS:
            names = [flags.FLAGS.config.get("method", "")]
            names += list(flags.FLAGS["methods"].value) if "methods" in flags.FLAGS else []
            for line in overridden_flags(sys.argv, flags.FLAGS.config, names):
                print(line, file=sys.stderr)
        guarded(fn)

    app.run(main, flags_parser=parse_flags)


def _fail(message: str, status: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors naming the flag and, for a config field that
    does not exist, the closest existing ones."""
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS:
            try:  # a config file that failed to load raises on first use
                flags.FLAGS.config["seed"]
            except KeyError:
                pass
        return rest
    except OSError as e:
        path = None  # the last --config given wins, as in absl
        for i, a in enumerate(argv):
            if a.startswith("--config="):
                path = a.split("=", 1)[1]
            elif a == "--config" and i + 1 < len(argv):
                path = argv[i + 1]
        _fail(f"--config {path}: cannot load that config file ({str(e).splitlines()[-1].strip()})")
    except flags.Error as e:
        _fail(f"{e}")
    except (AttributeError, KeyError) as e:  # ml_collections: a field that does not exist
        key = str(e).strip("\"'")
        bad = next((a for a in argv[1:] if a.startswith("--config.") and key in a), None)
        _fail(_unknown_field(bad) if bad else f"bad flag: {key}")
    except (TypeError, ValueError) as e:
        _fail(f"bad flag value: {e}")
    return argv


def overridden_flags(argv: list[str], config, method_names) -> list[str]:
    """One warning line per ``--config.x=v`` of ``argv`` that a method of ``method_names``
    sets to another value itself: the method's value is the one that runs."""
    from smec_jax import methods

    given = {}
    for a in argv[1:]:
        if a.startswith("--config.") and "=" in a:
            dotted = a[len("--config.") :].split("=", 1)[0]
            node = config
            for part in dotted.split("."):
                node = node[part]
            given[dotted] = node
    lines = []
    for name in dict.fromkeys(n for n in method_names if n in methods.names()):
        for dotted, value in methods.get(name).overrides.items():
            if dotted in given and given[dotted] != value:
                lines.append(
                    f"warning: --config.{dotted}={given[dotted]!r} does not apply to method "
                    f"{name}, which sets it to {value!r}"
                )
    return lines


def _unknown_field(arg: str) -> str:
    import difflib

    dotted = arg.split("=", 1)[0][len("--config.") :]
    *parent, leaf = dotted.split(".")
    where = "configs/default.py"
    try:  # the fields that do exist beside it, from the default config
        import importlib.util

        spec = importlib.util.spec_from_file_location("_smec_default_config", DEFAULT_CONFIG)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        node = module.get_config()
        for part in parent:
            node = node[part]
        near = difflib.get_close_matches(leaf, list(node.keys()), n=3)
    except Exception:  # noqa: BLE001 - the hint is optional
        near = []
    hint = f"; did you mean {', '.join('.'.join([*parent, n]) for n in near)}?" if near else ""
    return f"{arg}: the config has no field {dotted} (see {where}){hint}"


def guarded(main: Callable[[], object]) -> None:
    """Runs ``main``; bad input ends the program with one clear line and exit status 2, a
    non-finite loss with exit status 3, a SIGTERM that saved and stopped (preemption) with
    one line and status 143."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("absl", "jax._src.xla_bridge", "tensorflow_datasets", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        main()
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except interrupts.Preempted as e:
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(interrupts.PREEMPTED_STATUS)
