"""A small deterministic dataset generated in memory: runs anywhere, no data folder needed."""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "synthetic"  # sizes: c.data.synthetic in configs/default.py
    c.ladder = (64, 32, 16, 8)
    return c
