"""The validation split keeps its purpose on sparse and dense judgments, and the training
input never sees what validation holds out."""

import logging

import numpy as np
import pytest

from smec_jax.datasets.data import RetrievalData
from smec_jax.training import batches, splits


def dense_judgments(n_q=300, n_docs=400, per_q=20, seed=0) -> RetrievalData:
    """Every query judges ~20 documents drawn with a popularity skew, so "shares a relevant
    document" joins all queries into one component (as in NFCorpus)."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_docs + 1) ** 0.8
    pop /= pop.sum()
    ids = [f"d{i}" for i in range(n_docs)]
    qids = [f"q{i}" for i in range(n_q)]
    qrels = {
        q: {ids[j]: int(rng.integers(1, 3)) for j in rng.choice(n_docs, per_q, False, p=pop)}
        for q in qids
    }
    x = rng.normal(size=(n_docs + n_q, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return RetrievalData("dense", "toy", ids, x[:n_docs], qids, x[n_docs:], {"train": qrels})


def relevant(qrels, q):
    return {d for d, g in qrels[q].items() if g > 0}


def test_dense_judgments_hold_out_documents_not_whole_components():
    d = dense_judgments()
    assert len(splits._components(d.judged_queries("train"), d.qrels["train"])) == 1
    vs = splits.split_train_val(d, "train", 0.15, seed=0)
    assert vs.strategy == "doc_holdout"
    assert len(vs.train) >= 0.7 * 300
    assert abs(len(vs.val) - 45) <= 1
    assert not set(vs.train) & set(vs.val)
    assert len(vs.train) + len(vs.val) + vs.lost == 300
    # no validation query's relevant document is judged for a training query after the drop
    val_docs = set().union(*(relevant(d.qrels["train"], q) for q in vs.val))
    assert val_docs <= vs.held_out
    assert not any(set(vs.train_qrels[q]) & val_docs for q in vs.train)
    dropped = sum(len(d.qrels["train"][q]) for q in d.judged_queries("train") if q not in vs.val)
    dropped -= sum(len(j) for j in vs.train_qrels.values())
    assert dropped == vs.dropped > 0
    assert "doc_holdout" in vs.describe() and f"{vs.dropped} training judgments" in vs.describe()


def test_held_out_documents_are_never_hard_negatives():
    d = dense_judgments()
    vs = splits.split_train_val(d, "train", 0.15, seed=0)
    tq = batches.resolve(d, "train", vs.train, 30, qrels=vs.train_qrels, held_out=vs.held_out)
    held_rows = {d.corpus_ids.index(x) for x in vs.held_out}
    pool = set(tq.hard_pool[tq.hard_pool >= 0].tolist())
    assert pool and not pool & held_rows
    judged_rows = {int(r) for rows, _ in tq.judged for r in rows}
    assert not judged_rows & held_rows


def test_sparse_judgments_keep_the_component_split(synthetic):
    """Where components give a usable split (the tiny data, SciFact), auto picks them: whole
    components on one side, nothing dropped, the same split as strategy='components'."""
    auto = splits.split_train_val(synthetic, "train", 0.15, seed=3)
    comp = splits.split_train_val(synthetic, "train", 0.15, seed=3, strategy="components")
    assert auto == comp and auto.strategy == "components" and auto.dropped == 0
    qrels = synthetic.qrels["train"]
    train_docs = set().union(*(relevant(qrels, q) for q in auto.train))
    assert not any(relevant(qrels, q) & train_docs for q in auto.val)


def test_real_scifact_split_is_the_component_split(scifact_minilm):
    vs = splits.split_train_val(scifact_minilm, "train", 0.15, seed=0)
    assert vs.strategy == "components" and (len(vs.train), len(vs.val)) == (688, 121)


def test_no_sound_split_falls_back_to_random_with_a_warning(caplog):
    """Every query judges the same document: holding it out leaves nothing to train on, so
    the split is random, and a warning says what validation then measures."""
    d = dense_judgments(n_q=50)
    d.qrels["train"] = {q: {"d0": 1} for q in d.query_ids}
    with caplog.at_level(logging.WARNING):
        vs = splits.split_train_val(d, "train", 0.2, seed=0)
    assert vs.strategy == "random" and (len(vs.train), len(vs.val)) == (40, 10)
    assert "rewards remembering documents" in caplog.text
    with pytest.raises(ValueError, match="unknown train.val_split 'x'"):
        splits.split_train_val(d, "train", 0.2, seed=0, strategy="x")
