"""One process of a multi-process (multi-host style) training run on CPU, for the tests.

  python -m tests.helpers.multihost_worker PROCESS_ID NUM_PROCESSES PORT OUT_DIR WORKDIR [restore-only]

Each process sees 4 simulated CPU devices and joins the others through
``jax.distributed.initialize`` (gloo collectives); together they train the pod config
(configs/tpu_pod.py, its S-XBM memory sharded over every device) shrunk to the tiny synthetic
run, each feeding only its slice of every global batch, then search a corpus sharded over
both processes. Process 0 writes the final parameters and the search to OUT_DIR/params.npz.
With ``restore-only``, any training step is an error (the workdir must hold a finished run).
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main():
    pid, nproc, port, out_dir, workdir = sys.argv[1:6]
    restore_only = sys.argv[6:] == ["restore-only"]
    jax.distributed.initialize(f"localhost:{port}", int(nproc), int(pid))
    assert jax.device_count() == 4 * int(nproc) and jax.local_device_count() == 4

    from smec_jax.datasets import sources
    from smec_jax.training import train
    from tests.helpers import pod_config

    cfg = pod_config()
    ds = sources.load(cfg.data)

    def no_steps(step):
        raise AssertionError(f"trained step {step} instead of restoring a finished run")

    res = train.train(
        cfg,
        ds,
        workdir if workdir != "-" else None,
        verbose=False,
        on_step=no_steps if restore_only else None,
    )
    # Exact retrieval with the corpus sharded over both processes' devices.
    from smec_jax import parallel
    from smec_jax.core import retrieval

    q = ds.queries[:50]
    s_global, i_global = retrieval.search(q, ds.corpus, 20, chunk=16, mesh=parallel.data_mesh())
    if jax.process_index() == 0:
        np.savez(
            os.path.join(out_dir, "params.npz"),
            order=res.compressor.order,
            search_scores=s_global,
            search_rows=i_global,
            **{k: np.asarray(v) for k, v in res.compressor.params.items()},
        )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
