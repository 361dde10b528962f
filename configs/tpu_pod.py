"""A TPU pod launch: one process per host, all hosts run the same command.

  # on every host of the pod (e.g. gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...)
  python -m launch.train --config configs/tpu_pod.py --workdir gs://BUCKET/smec/run1 \
      --config.data.root=/mnt/beir

jax.distributed.initialize() finds the coordinator and the process index itself on TPU
pods. Every host reads the same (small) embedding files; each global batch is assembled
identically on every host and each host feeds only the rows its own devices hold
(jax.make_array_from_process_local_data). Checkpoints go to --workdir, which every host
must see (a GCS bucket): orbax coordinates the hosts' writes. The S-XBM memory is sharded
over all chips, so it can grow far beyond one chip's memory.
"""

from configs import mpnet


def get_config():
    c = mpnet.get_config()
    c.distributed = True
    c.train.batch_queries = 512  # divisible by the chip count (e.g. v5e-64: 64 chips)
    c.train.steps_per_stage = 2000
    c.train.eval_every = 200
    c.train.log_every = 100
    c.train.ckpt_every = 200
    c.memory.size = 65536  # divisible by the chip count
    c.memory.sharded = True
    return c
