"""The tiny synthetic config of the tests and examples: trains every method in seconds on CPU.

python -m launch.train --config configs/tiny.py --workdir runs/tiny
python -m launch.reproduce --config configs/tiny.py --workdir runs/tiny-reproduce --seeds 0,1
"""

from configs import synthetic


def get_config():
    c = synthetic.get_config()
    c.data.synthetic.update(n_docs=600, n_train=120, n_test=40, dim=32, rank=8, seed=1)
    c.ladder = (32, 16, 8)
    c.method = "smec"  # the paper's method: the tests' tiny runs train it
    c.train.update(
        batch_queries=16,
        n_hard=3,
        hard_pool=8,
        steps_per_stage=8,
        eval_every=4,
        log_every=2,
        ckpt_every=4,
        patience=100,
        unsup_batch=32,
        distill_batch=16,
        distill_top=4,
        distill_random=32,
    )
    c.memory.update(size=64, k=4)
    c.csr.update(k=4, steps=16)
    c.pq.update(bytes=(4,), steps=20, opq_iterations=2)
    return c
