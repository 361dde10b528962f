"""Pseudo-queries from the corpus, and the asymmetric compressor they train.

What this proves: the rules pick the texts they say; a pseudo-query folder is written whole
or not at all, resumes after an interruption to the same bytes, and is refused (one line)
when it belongs to another encoder, another corpus or an edited one; distillation and the
score-preserving maps read the pseudo-queries (and nothing of the judgments) when asked;
an asymmetric compressor maps queries by its own map everywhere it is scored or served.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smec_jax import methods
from smec_jax.core import export, model
from smec_jax.datasets import data, pseudo_queries
from smec_jax.datasets.data import DataError
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.training import batches as batching
from smec_jax.training import doc_codes, objective
from tests.helpers import tiny_config
from tests.test_encode import FlakyEncoder
from tests.test_unlabelled import _distill_loop

CORPUS = [
    {
        "_id": "a",
        "title": "Vitamin D and bone",
        "text": "Vitamin D raises bone density in mice. "
        "It does so in rats, e.g. in older ones. Short one. 3 of 4 trials agree on this.",
    },  # fmt: skip
    {"_id": "b", "title": "", "text": "No title here at all. But a second sentence is here."},
    {"_id": "c", "title": "Only a title", "text": ""},
]


def _beir(tmp_path, rows=CORPUS):
    folder = tmp_path / "beir"
    folder.mkdir(exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_rules_pick_titles_and_sentences_of_enough_words():
    ids, texts = pseudo_queries.extract(CORPUS, "sentences")
    assert ids == ["a#title", "a#s0", "a#s1", "a#s2", "b#s0", "b#s1", "c#title"]
    assert texts[1:4] == [
        "Vitamin D raises bone density in mice.",
        "It does so in rats, e.g. in older ones.",  # no split after "e.g." (lower case)
        "3 of 4 trials agree on this.",  # "Short one." has 2 words: dropped
    ]
    assert pseudo_queries.extract(CORPUS, "first")[0] == ["a#title", "a#s0", "b#s0", "c#title"]
    # titles: the first sentence stands in for a missing title
    assert pseudo_queries.extract(CORPUS, "titles")[0] == ["a#title", "b#s0", "c#title"]
    with pytest.raises(ValueError, match="unknown pseudo-query rule 'words'"):
        pseudo_queries.extract(CORPUS, "words")


def _dataset(ids=("a", "b", "c"), dim=16, encoder="fake"):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(ids), dim)).astype(np.float32)
    return data.RetrievalData(
        name="mini",
        encoder=encoder,
        corpus_ids=list(ids),
        corpus=x / np.linalg.norm(x, axis=1, keepdims=True),
        query_ids=[],
        queries=np.zeros((0, dim), np.float32),
        qrels={},
    )


def test_an_interrupted_folder_resumes_to_the_same_bytes_and_loads(tmp_path):
    beir = _beir(tmp_path)
    straight = pseudo_queries.make(beir, tmp_path / "a", FlakyEncoder(), model_name="fake",
                                   rule="sentences", chunk=2)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        pseudo_queries.make(beir, tmp_path / "b", FlakyEncoder(crash_after=2), model_name="fake",
                            rule="sentences", chunk=2)  # fmt: skip
    assert not (tmp_path / "b").exists()  # nothing under the final name
    second = FlakyEncoder()
    resumed = pseudo_queries.make(beir, tmp_path / "b", second, model_name="fake",
                                  rule="sentences", chunk=2)  # fmt: skip
    assert second.calls == 2  # 7 texts in chunks of 2: 2 of 4 chunks were left
    for f in ("queries.npy", "query_ids.txt"):
        assert (straight / f).read_bytes() == (resumed / f).read_bytes()
    x = pseudo_queries.load(straight, _dataset(), beir)
    assert x.shape == (7, 16)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-3)
    meta = json.loads((straight / "meta.json").read_text())
    assert meta["rule"] == "sentences" and meta["model"] == "fake" and meta["n"] == 7


def test_pseudo_queries_of_another_encoder_corpus_or_text_are_refused(tmp_path):
    beir = _beir(tmp_path)
    folder = pseudo_queries.make(beir, tmp_path / "p", FlakyEncoder(), model_name="fake",
                                 rule="titles")  # fmt: skip
    with pytest.raises(DataError, match="embedded with 'fake' but the corpus with 'other'"):
        pseudo_queries.load(folder, _dataset(encoder="other"), beir)
    with pytest.raises(DataError, match=r"query_ids.txt:2: 'b#s0' names no document of mini"):
        pseudo_queries.load(folder, _dataset(ids=("a", "c")), beir)
    with pytest.raises(DataError, match="16-d, the corpus is 32-d"):
        pseudo_queries.load(folder, _dataset(dim=32))
    edited = [dict(CORPUS[0], text="Edited."), *CORPUS[1:]]
    with pytest.raises(DataError, match="corpus texts in .* changed since these pseudo-queries"):
        pseudo_queries.load(folder, _dataset(), _beir(tmp_path, edited))
    with pytest.raises(DataError, match="not a pseudo-query folder"):
        pseudo_queries.load(tmp_path, _dataset())


@pytest.mark.slow
def test_attach_reads_the_configured_folder_and_unlabelled_sources_combine(tmp_path, synthetic):
    beir = _beir(tmp_path)
    folder = pseudo_queries.make(beir, tmp_path / "p", FlakyEncoder(), model_name="fake",
                                 rule="first")  # fmt: skip
    cfg = tiny_config()
    cfg.data.pseudo_queries = str(folder)
    ds = pseudo_queries.attach(_dataset(), cfg.data)
    assert ds.pseudo_queries.shape == (4, 16) and ds.pseudo_source.startswith("4 pseudo-queries")
    assert ds.pseudo_doc_rows.tolist() == [0, 0, 1, 2]  # a#title a#s0 b#s0 c#title
    got, source = batching.unlabelled_queries(ds, source="pseudo")
    assert got is ds.pseudo_queries and source == ds.pseudo_source
    both, source = batching.unlabelled_queries(synthetic, source="train+pseudo")
    n_train = len(synthetic.qrels["train"])
    assert both.shape[0] == len(synthetic.corpus_ids) + n_train and "training queries" in source
    with pytest.raises(ValueError, match="no pseudo-queries attached"):
        batching.unlabelled_queries(_dataset(), source="pseudo")
    # a query-log share repeats the training queries, whole, to about that share of the pool
    n_pseudo = len(synthetic.corpus_ids)  # the corpus stands in for pseudo-queries here
    logged = synthetic.with_pseudo_queries(synthetic.corpus, "stand-ins")
    train_ids = [q for q in synthetic.query_ids if q in synthetic.qrels["train"]]
    q = synthetic.queries[synthetic.query_rows(train_ids)]
    for share in (0.25, 0.5, 0.75):
        got, source = batching.unlabelled_queries(logged, None, "train", "train+pseudo", share)  # fmt: skip
        copies = (len(got) - n_pseudo) // n_train
        assert (len(got) - n_pseudo) % n_train == 0 and f"x{copies}" in source
        assert abs((len(got) - n_pseudo) / len(got) - share) < n_train / len(got)
        np.testing.assert_array_equal(got[n_pseudo:], np.tile(q, (copies, 1)))
    # none made yet and an encoder that cannot load: one line saying how, nothing written
    cfg.data.pseudo_queries, cfg.data.pseudo_cache = "", str(tmp_path / "cache")
    unmade = _dataset(encoder="no-such-encoder")
    unmade.source_dir = str(beir)
    with pytest.raises(DataError, match="no pseudo-queries at .* --pseudo_queries sentences"):
        pseudo_queries.attach(unmade, cfg.data)
    assert not (tmp_path / "cache").exists()


def test_score_maps_take_their_query_moment_from_the_pseudo_queries(synthetic):
    from smec_jax.methods import score_preserving

    _, _, _, source = score_preserving.moments(synthetic, "train", "pseudo")
    assert source == synthetic.pseudo_source
    cfg = tiny_config()
    cfg.method, cfg.train.unlabelled_queries = "score_pca", "pseudo"
    comp = methods.get("score_pca").fit(cfg, synthetic, verbose=False).compressor
    ref, _ = score_preserving.fit_score_pca(synthetic, "train", "pseudo")
    np.testing.assert_array_equal(np.asarray(comp.components), np.asarray(ref.components))


# ---------------------------------------------------------------------------- asymmetric


def _asymmetric_params(rng, d=16):
    p = model.init_params(jax.random.key(0), "linear", d, d, 0, asymmetric=True)
    return jax.tree.map(lambda a: a + 0.3 * rng.normal(size=a.shape).astype(np.float32), p)


def test_distillation_maps_queries_by_the_query_map_in_value():
    rng = np.random.default_rng(1)
    params = _asymmetric_params(rng)
    batch = {
        "u_q": jnp.asarray(rng.normal(size=(4, 16)), jnp.float32),
        "u_d": jnp.asarray(rng.normal(size=(9, 16)), jnp.float32),
        "u_valid": jnp.asarray([True] * 8 + [False]),
    }
    kept, masks = np.arange(16), (None, jnp.asarray(np.arange(16) < 5, jnp.float32))
    got = objective.distill_term(params, batch, kept, masks, 0.1)
    qside, dside = model.query_side(params), params

    def y_fn(x):  # the loop's outputs: queries by the query map, documents by the other
        side = qside if x is batch["u_q"] else dside
        return model.apply_cols(side, x, kept)

    np.testing.assert_allclose(float(got), _distill_loop(batch, y_fn, masks, 0.1), rtol=2e-4)
    symmetric = objective.distill_term(
        {"w": params["w"], "b": params["b"]}, batch, kept, masks, 0.1
    )
    assert abs(float(symmetric) - float(got)) > 1e-3  # the query map does change the loss


def test_distill_pseudo_trains_an_asymmetric_nested_map_on_pseudo_queries(
    tmp_path, synthetic, monkeypatch
):
    """The method reads the pseudo-queries (never the judgments), trains both maps, and its
    export maps queries and documents like the compressor the Evaluator scored."""
    seen = {}
    real = batching.unlabelled_queries

    def spy(data, qids=None, split="train", source="train", log_share=0.0):
        seen["source"] = source
        return real(data, qids, split, source, log_share)

    monkeypatch.setattr(batching, "unlabelled_queries", spy)
    cfg = methods.get("distill_pseudo").resolve(tiny_config())
    cfg.train.steps_per_stage = 6
    blind = synthetic.__class__(**{**synthetic.__dict__, "qrels": {}})  # no judgments at all
    comp = methods.get("distill_pseudo").fit(cfg, blind, tmp_path, verbose=False).compressor
    assert seen["source"] == "pseudo"
    assert not np.allclose(comp.params["w"], comp.params["wq"])  # both maps trained apart
    x = synthetic.queries[:5]
    npz = export.load_numpy(export.save(comp, tmp_path / "c.npz"))
    for d in cfg.ladder:
        np.testing.assert_allclose(
            export.apply_exported(npz, x, d, queries=True), comp.compress_queries(x, d), atol=1e-5
        )
        np.testing.assert_allclose(export.apply_exported(npz, x, d), comp.compress(x, d), atol=1e-5)
    ev = Evaluator(synthetic)
    q = synthetic.queries[synthetic.query_rows(ev.qids)]
    want = np.argsort(-np.asarray(comp.compress_queries(q, 8) @ comp.compress(synthetic.corpus, 8).T), 1)  # fmt: skip
    _, top = ev.search(comp, 8, 5)
    assert (np.asarray(top)[:, 0] == want[:, 0]).mean() > 0.95  # ties aside, the query map ranks


def test_distill_pseudo_log_distils_on_pseudo_queries_and_half_as_many_log_queries(
    monkeypatch, synthetic
):
    """The query-log variant's distillation pool is the pseudo-queries plus whole copies of
    the training queries (about half the pool), and never holds a test query."""
    seen = {}
    real = batching.unlabelled_queries

    def spy(data, qids=None, split="train", source="train", log_share=0.0):
        seen["pool"], seen["source"] = real(data, qids, split, source, log_share)
        return seen["pool"], seen["source"]

    monkeypatch.setattr(batching, "unlabelled_queries", spy)
    cfg = methods.get("distill_pseudo_log").resolve(tiny_config())
    cfg.train.steps_per_stage = 2
    methods.get("distill_pseudo_log").fit(cfg, synthetic, None, verbose=False)
    pool, n_pseudo = seen["pool"], len(synthetic.pseudo_queries)
    np.testing.assert_array_equal(pool[:n_pseudo], synthetic.pseudo_queries)
    train_ids = [q for q in synthetic.query_ids if q in synthetic.qrels["train"]]
    log = synthetic.queries[synthetic.query_rows(train_ids)]
    copies = (len(pool) - n_pseudo) // len(log)
    np.testing.assert_array_equal(pool[n_pseudo:], np.tile(log, (copies, 1)))
    assert abs(copies * len(log) / len(pool) - 0.5) < len(log) / len(pool)
    test_ids = [q for q in synthetic.judged_queries("test") if q not in set(train_ids)]
    test_q = synthetic.queries[synthetic.query_rows(test_ids)]
    assert not (np.abs(pool[:, None, :] - test_q[None]).sum(-1) < 1e-6).any()


def test_inverse_cloze_batches_hold_each_pseudo_querys_source_document(synthetic):
    """With ``train.distill_source_weight``, every pseudo-query's source document is among
    its batch's candidates, ``u_src`` points at its first (valid) occurrence, log queries
    (no source) get -1, and the candidate count stays static; without it, batches are as
    before (no ``u_src``, the same candidates)."""
    cfg = methods.get("distill_pseudo_log").resolve(tiny_config())
    train_q = list(synthetic.qrels["train"])
    plain = batching.distill_input(cfg, synthetic, train_q)
    cfg.train.distill_source_weight = 0.2
    ds = batching.distill_input(cfg, synthetic, train_q)
    queries, _ = batching.unlabelled_queries(
        synthetic, train_q, source="train+pseudo", log_share=cfg.train.log_share
    )
    n_pseudo = len(synthetic.pseudo_queries)
    batch_size = cfg.train.distill_batch
    seen_log = seen_pseudo = 0
    for step in range(6):
        b, p = ds[step], plain[step]
        assert "u_src" not in p
        np.testing.assert_array_equal(b["u_q"], p["u_q"])
        assert b["u_d"].shape[0] == p["u_d"].shape[0] + batch_size
        np.testing.assert_array_equal(b["u_d"][: p["u_d"].shape[0]], p["u_d"])
        for q, at in zip(b["u_q"], b["u_src"], strict=True):
            row = int(np.flatnonzero((queries == q).all(1))[0])
            if row >= n_pseudo:  # a log query: no source
                assert at == -1
                seen_log += 1
                continue
            seen_pseudo += 1
            src = synthetic.pseudo_doc_rows[row]
            assert b["u_valid"][at] and not any(
                (b["u_d"][j] == b["u_d"][at]).all() for j in range(at)
            )
            np.testing.assert_array_equal(b["u_d"][at], synthetic.corpus[src])
        assert b["u_src"].dtype == np.int32 and len(b["u_src"]) == batch_size
    assert seen_log and seen_pseudo


def test_documents_rule_needs_no_encoder_and_leaves_each_document_out_of_its_own_ranking(
    tmp_path, synthetic, monkeypatch
):
    """Under the rule ``documents`` the pseudo-queries are the corpus rows themselves, with
    no folder, text or encoder (an encoder that cannot load is never asked); each batch's
    ``u_self`` points at the query's own document, found by comparing rows, wherever it is
    a candidate (always: it is its own top match), and log queries get -1; ``distill_docs``
    trains on them, the codes of ``distill_pseudo_codes`` under this rule are fitted with
    every document's own row given, and the inverse cloze refuses the rule."""
    from smec_jax.training import checks

    cfg = methods.get("distill_docs").resolve(tiny_config())
    assert cfg.data.pseudo_rule == "documents"
    cfg.data.pseudo_cache = str(tmp_path / "cache")
    blind = synthetic.__class__(**{**synthetic.__dict__, "qrels": {}, "encoder": "no-such"})
    ds = pseudo_queries.attach(blind, cfg.data)
    np.testing.assert_array_equal(ds.pseudo_queries, synthetic.corpus)
    assert ds.pseudo_doc_rows.tolist() == list(range(len(synthetic.corpus_ids)))
    assert not (tmp_path / "cache").exists()
    cfg.train.unlabelled_queries, cfg.train.log_share = "train+pseudo", 0.5
    train_q = list(synthetic.qrels["train"])
    batches = batching.distill_input(cfg, ds, train_q)
    seen_doc = seen_log = 0
    for step in range(6):
        b = batches[step]
        assert b["u_self"].dtype == np.int32 and "u_src" not in b
        for q, at in zip(b["u_q"], b["u_self"], strict=True):
            own = np.flatnonzero((synthetic.corpus == q).all(1))
            if not len(own):  # a log query
                assert at == -1
                seen_log += 1
                continue
            seen_doc += 1
            assert b["u_valid"][at] and (b["u_d"][at] == q).all()
            assert not any((b["u_d"][j] == q).all() for j in range(at))
    assert seen_doc and seen_log
    cfg = methods.get("distill_docs").resolve(tiny_config())
    cfg.train.steps_per_stage = 6
    comp = methods.get("distill_docs").fit(cfg, blind, tmp_path, verbose=False).compressor
    assert not np.allclose(comp.params["w"], comp.params["wq"])  # both maps trained
    # the codes: fitted with each document left out of its own candidates
    seen = {}
    real_fit = doc_codes.fit

    def spy(*args, self_rows=None, **kw):
        seen["self_rows"] = self_rows
        return real_fit(*args, self_rows=self_rows, **kw)

    monkeypatch.setattr(doc_codes, "fit", spy)
    cfg_codes = tiny_config()
    cfg_codes.data.pseudo_rule = "documents"
    cfg_codes.train.steps_per_stage = 6
    codes = methods.get("distill_pseudo_codes").fit(
        cfg_codes, blind, tmp_path / "codes", verbose=False
    )
    assert seen["self_rows"].tolist() == list(range(len(synthetic.corpus_ids)))
    base = codes.compressor.base.compress(synthetic.corpus, max(cfg.ladder))
    assert not np.allclose(codes.compressor.codes, np.asarray(base), atol=1e-4)
    cfg.train.distill_source_weight = 0.2
    with pytest.raises(ValueError, match="which the pseudo-query rule `documents` leaves out"):
        checks.validate_trainer_config(cfg, synthetic, 1)


def test_inverse_cloze_needs_pseudo_queries_with_their_sources(tmp_path, synthetic):
    from smec_jax.training import checks

    cfg = methods.get("distill").resolve(tiny_config())
    cfg.train.distill_source_weight = 0.2
    with pytest.raises(ValueError, match="distill_source_weight needs pseudo-queries"):
        checks.validate_trainer_config(cfg, synthetic, 1)
    cfg.train.distill_source_weight = 1.0  # no teacher left beside the source: refused
    with pytest.raises(ValueError, match="distill_source_weight must be < 1.0"):
        checks.validate_config(cfg)
    cfg = methods.get("distill_pseudo").resolve(tiny_config())
    cfg.train.distill_source_weight = 0.2
    unsourced = synthetic.with_pseudo_queries(synthetic.pseudo_queries, "no sources")
    with pytest.raises(ValueError, match="the document each pseudo-query was made from"):
        batching.distill_input(cfg, unsourced, None)
    with pytest.raises(ValueError, match=r"doc rows must be 3 corpus rows"):
        synthetic.with_pseudo_queries(synthetic.pseudo_queries[:3], "bad", [0, 1, 10**6])
