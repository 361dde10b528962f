"""A small deterministic dataset generated in memory: runs anywhere, no data folder needed."""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "synthetic"
    c.data.synthetic.n_docs = 2000
    c.data.synthetic.n_train = 400
    c.data.synthetic.n_test = 100
    c.data.synthetic.dim = 64
    c.data.synthetic.rank = 16
    c.data.synthetic.seed = 0
    c.ladder = (64, 32, 16, 8)
    return c
