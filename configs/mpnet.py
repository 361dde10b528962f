"""SciFact with all-mpnet-base-v2 (768-d) embeddings."""

from configs import default


def get_config():
    c = default.get_config()
    c.data.encoder = "all-mpnet-base-v2"
    c.ladder = (768, 384, 256, 128, 64, 32)
    return c
