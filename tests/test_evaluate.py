"""The evaluate command: the results format, and the reference SciFact numbers."""

import json
import subprocess
import sys

import numpy as np
import pytest

from configs import default as default_config
from smec_jax import jobs, methods
from smec_jax.evaluation import evaluator as evaluation
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.methods import closed_form, doc_prior
from tests.conftest import SCIFACT


def test_command_on_synthetic_writes_results_and_plot(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.evaluate",
            "--config",
            "configs/synthetic.py",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "unseen queries" in out.stdout
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc) == {"dataset", "encoder", "split", "results", "unseen_queries"}
    assert set(doc["results"]) == {"truncate", "pca"}
    assert list(doc["results"]["pca"]) == ["64", "32", "16", "8"]
    keys = {f"{m}{s}" for m in evaluation.METRICS for s in ("", "_unseen")} | {"bytes_per_vector"}
    assert set(doc["results"]["pca"]["8"]) == keys
    assert (tmp_path / "ndcg_vs_dim.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_data_folder_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.evaluate",
            f"--config.data.root={tmp_path}/none",
            "--workdir",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "configs/synthetic.py" in out.stderr
    assert not (tmp_path / "w").exists()


def test_pca_equals_numpy_float64_pca(synthetic):
    comp = closed_form.fit_pca_corpus(synthetic.corpus)
    x = synthetic.corpus.astype(np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    for dim in (4, 16):
        ref = (synthetic.queries - mean) @ vt[:dim].T
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        got = np.asarray(comp.compress(synthetic.queries, dim))
        signs = np.sign((got * ref).sum(0))  # axes are defined up to sign
        np.testing.assert_allclose(got * signs, ref, atol=2e-4)


REFERENCE = {  # DESIGN.md section 3: SciFact test, all-MiniLM-L6-v2, nDCG@10
    "truncate": {"384": 0.6451, "256": 0.6349, "128": 0.6016, "64": 0.4841, "32": 0.3371},
    "pca": {"256": 0.6370, "128": 0.6107, "64": 0.5404, "32": 0.4530},
}
REFERENCE_UNSEEN = {
    "truncate": {"384": 0.6758, "256": 0.6718, "128": 0.6132, "64": 0.4782, "32": 0.3518},
    "pca": {"256": 0.6797, "128": 0.6316, "64": 0.5472, "32": 0.4637},
}


def test_default_config_reproduces_reference_scifact_numbers(tmp_path, scifact_minilm):
    if not SCIFACT.is_dir():
        pytest.skip("real data not found")
    doc = jobs.evaluate(default_config.get_config(), str(tmp_path))
    for ref, suffix in ((REFERENCE, ""), (REFERENCE_UNSEEN, "_unseen")):
        for method, by_size in ref.items():
            for size, want in by_size.items():
                got = doc["results"][method][size]["ndcg@10" + suffix]
                assert abs(got - want) <= 5e-4, (method, size, suffix, got, want)


def test_doc_prior_marks_training_documents_and_validates_beta(synthetic):
    cfg = default_config.get_config()
    comp = methods.get("doc_prior").fit(cfg, synthetic).compressor
    train_docs = {d for q in synthetic.qrels["train"].values() for d, g in q.items() if g > 0}
    marked = {synthetic.corpus_ids[i] for i in np.flatnonzero(comp.doc_bias())}
    assert comp.beta in doc_prior.BETAS
    assert marked == (train_docs if comp.beta > 0 else set())
    # beta = 0 is exactly the original ranking
    plain = doc_prior.DocPrior(bias=np.zeros(len(synthetic.corpus_ids), np.float32), beta=0.0)
    res = Evaluator(synthetic).evaluate({"p": plain, "t": closed_form.Truncate()}, (32,))
    assert res["p"]["32"] == res["t"]["32"]


def test_agreement_is_the_share_of_the_full_size_top_k_kept(synthetic):
    """Evaluator.agreement against a loop over queries with numpy cosines and python sets:
    PCA at 8 dims keeps some of the uncompressed top 10, the uncompressed embeddings all."""
    ev = Evaluator(synthetic, split="test")
    full = closed_form.Truncate()
    _, reference = ev.search(full, synthetic.dim, 10)
    pca = methods.get("pca").fit(default_config.get_config(), synthetic).compressor
    got = ev.agreement(pca, 8, reference)
    x = synthetic.corpus / np.linalg.norm(synthetic.corpus, axis=1, keepdims=True)
    c = np.asarray(pca.compress(synthetic.corpus, 8))
    q_rows = synthetic.query_rows(ev.qids)
    q_full = synthetic.queries[q_rows] / np.linalg.norm(synthetic.queries[q_rows], axis=1)[:, None]
    q_c = np.asarray(pca.compress(synthetic.queries[q_rows], 8))
    want = []
    for i in range(len(q_rows)):
        top_full = set(np.argsort(-(x @ q_full[i]), kind="stable")[:10])
        top_c = set(np.argsort(-(c @ q_c[i]), kind="stable")[:10])
        want.append(len(top_full & top_c) / 10)
    np.testing.assert_allclose(got, want)
    assert 0.0 < got.mean() < 1.0
    np.testing.assert_array_equal(ev.agreement(full, synthetic.dim, reference), 1.0)


def test_with_no_training_judgments_every_test_query_is_unseen(synthetic):
    """A corpus with no training split (e.g. SQuAD-dev here): no test query can have a relevant
    document judged in training, so the unseen columns are all the queries, not none."""
    import dataclasses

    from smec_jax.methods.closed_form import Truncate

    no_train = dataclasses.replace(synthetic, qrels={"test": synthetic.qrels["test"]})
    ev = Evaluator(no_train, "test")
    assert ev.n_unseen == len(ev.qids) > 0
    row = ev.summarize(ev.per_query(Truncate(), 16))
    assert row["ndcg@10_unseen"] == row["ndcg@10"]
    assert Evaluator(synthetic, "test").n_unseen < len(ev.qids)  # with training judgments: fewer
    # and the report says why every test query is unseen
    from smec_jax.evaluation import reporting

    doc = reporting.results_document(no_train, "test", {"truncate": {"16": row}}, ev.n_unseen)
    assert doc["unseen_rule"] == "no training judgments: every test query is unseen"
    assert "(no training judgments: every test query is unseen)" in reporting.format_table(doc)
    with_train = reporting.results_document(synthetic, "test", {"truncate": {"16": row}}, 3)
    assert "unseen_rule" not in with_train
