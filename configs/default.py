"""Default: BEIR SciFact with all-MiniLM-L6-v2 embeddings from the data folder beside the checkout.

Override any field on the command line, e.g. ``--config.data.root=/data/beir`` (or set
``SMEC_DATA_DIR``), ``--config.ladder='(384,128,32)'``.
"""

import ml_collections

from smec_jax.data import default_data_root


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "beir"  # beir | tfds | synthetic
    c.data.root = default_data_root()
    c.data.dataset = "scifact"
    c.data.encoder = "all-MiniLM-L6-v2"
    c.data.tfds_dir = ""
    c.data.synthetic = ml_collections.ConfigDict()  # make_synthetic kwargs (source=synthetic)

    # Sizes to train and score, largest (the original dimension) first.
    c.ladder = (384, 256, 128, 64, 32)

    c.eval = ml_collections.ConfigDict()
    c.eval.split = "test"
    c.eval.methods = ("truncate", "pca")
    c.eval.exclude_self = False  # drop hits whose doc id equals the query id (ArguAna-style)
    return c
