"""Fit a method (SMEC by default), then score it next to truncation and PCA at every size.

  python -m launch.train [--config configs/default.py] --workdir DIR [--config.method=mrl]

Writes into DIR: config.json, checkpoints/ (resumable: rerun the same command),
metrics.jsonl, tensorboard/, results.json, ndcg_vs_dim.png and, for a nested compressor,
compressor.npz. Multi-host: run the same command on every host (see configs/tpu_pod.py).
"""

from __future__ import annotations

from absl import flags

from smec_jax import cli, jobs

FLAGS = flags.FLAGS
cli.define_config_and_workdir("runs/scifact")
cli.define_distributed_flags()

if __name__ == "__main__":
    cli.run_main(
        lambda: jobs.train_and_evaluate(
            FLAGS.config,
            FLAGS.workdir,
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
        )
    )
