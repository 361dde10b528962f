"""The array_record dataset round-trips exactly and feeds grain."""

import grain
import numpy as np

from smec_jax import jobs
from smec_jax.datasets import tfds_dataset
from tests.helpers import tiny_config


def test_round_trip_is_exact(tmp_path, synthetic):
    path = tfds_dataset.write_tfds(synthetic, tmp_path / "tfds")
    back = tfds_dataset.read_tfds(tmp_path / "tfds")
    assert (back.name, back.encoder) == (synthetic.name, synthetic.encoder)
    assert back.corpus_ids == synthetic.corpus_ids and back.query_ids == synthetic.query_ids
    np.testing.assert_array_equal(back.corpus, synthetic.corpus)
    np.testing.assert_array_equal(back.queries, synthetic.queries)
    assert back.qrels == synthetic.qrels
    assert not list(path.parent.glob("incomplete*"))


def test_grain_reads_shuffled_batches(tmp_path, synthetic):
    tfds_dataset.write_tfds(synthetic, tmp_path)
    src = tfds_dataset.data_source(tmp_path, "corpus")
    ds = (
        grain.MapDataset.source(src)
        .shuffle(seed=0)
        .map(lambda r: {"row": r["row"], "embedding": r["embedding"]})
        .batch(64, drop_remainder=True)
    )
    batches = list(ds)
    assert len(batches) == len(synthetic.corpus_ids) // 64
    b = batches[0]
    assert b["embedding"].shape == (64, synthetic.dim)
    np.testing.assert_array_equal(b["embedding"], synthetic.corpus[b["row"]])
    assert not np.array_equal(b["row"], np.arange(64))  # shuffled


def test_evaluate_reads_the_tfds_dataset(tmp_path, synthetic):
    """Scoring from the array_record copy gives exactly the in-memory numbers."""
    cfg = tiny_config()  # the same data as the ``synthetic`` fixture
    cfg.ladder = (32, 8)
    direct = jobs.evaluate(cfg, str(tmp_path / "a"))
    tfds_dataset.write_tfds(synthetic, tmp_path / "tfds")
    cfg.data.source, cfg.data.tfds_dir = "tfds", str(tmp_path / "tfds")
    via_tfds = jobs.evaluate(cfg, str(tmp_path / "b"))
    assert direct["results"] == via_tfds["results"]
