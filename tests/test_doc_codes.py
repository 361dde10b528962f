"""Free per-document codes (smec_jax.training.doc_codes).

What this proves: the codes' loss is the listwise KL of a loop over queries, candidates and
sizes; fitting them lowers that loss, ranked over the whole corpus (its batches see a few
candidates each), below the map's; the served compressor returns the codes for exactly that corpus (any other documents,
even one changed row, go through the map, and queries always do); the codes file holds
them with their ids, and ``launch.compress --corpus_codes`` serves them for their corpus only.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from smec_jax import methods
from smec_jax.core import export, retrieval
from smec_jax.datasets.data import DataError
from smec_jax.serving import codes_folder, compress
from smec_jax.training import doc_codes, objective, train
from tests.helpers import tiny_config


def _kl_loop(q_full, q_comp, corpus, codes, rows, valid, sizes, temperature):
    total = 0.0
    for size in sizes:
        kls = []
        for i in range(len(q_full)):
            cand = [r for r, ok in zip(rows, valid[i], strict=True) if ok]
            t = np.array([q_full[i] @ corpus[r] / np.linalg.norm(q_full[i]) / np.linalg.norm(corpus[r]) for r in cand])  # fmt: skip
            a = q_comp[i, :size]
            s = np.array([a @ codes[r, :size] / np.linalg.norm(a) / np.linalg.norm(codes[r, :size]) for r in cand])  # fmt: skip
            p = np.exp(t / temperature) / np.exp(t / temperature).sum()
            q = np.exp(s / temperature) / np.exp(s / temperature).sum()
            kls.append(np.sum(p * np.log(p / q)))
        total += np.mean(kls)
    return total


def test_the_codes_loss_is_a_listwise_kl_over_queries_candidates_and_sizes():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(20, 8)).astype(np.float32)
    codes = rng.normal(size=(20, 6)).astype(np.float32)
    q_full = rng.normal(size=(3, 8)).astype(np.float32)
    q_comp = rng.normal(size=(3, 6)).astype(np.float32)
    rows = np.array([4, 7, 4, 0, 19, 3, 11])
    valid = np.array([True, True, False, True, True, True, True])
    valid = np.stack([valid, valid & (rows != 19), valid])  # query 1 is document 19 itself
    got = doc_codes._loss(jnp.asarray(codes), q_full, q_comp, jnp.asarray(corpus), rows,
                          valid, (6, 2), 0.1)  # fmt: skip
    expect = _kl_loop(q_full, q_comp, corpus, codes, rows, valid, (6, 2), 0.1)
    np.testing.assert_allclose(float(got), expect, rtol=2e-4)


def _corpus_kl(comp, data, queries, size, temperature=0.05):
    """The distillation loss at ``size`` of ``comp`` on ``queries`` over the whole corpus."""
    q = jnp.asarray(queries)
    log_p = objective.teacher_log_probs(objective.cos_matrix(q, jnp.asarray(data.corpus)),
                                        True, temperature)  # fmt: skip
    student = objective.cos_matrix(comp.compress_queries(q, size), comp.compress(data.corpus, size))  # fmt: skip
    return float(objective.listwise_kl(log_p, student, True, temperature))


def test_fitted_codes_rank_closer_to_full_size_and_serve_only_their_corpus(tmp_path, synthetic):
    cfg = methods.get("distill_pseudo").resolve(tiny_config())
    base = train.train(cfg, synthetic, None, verbose=False).compressor
    t = cfg.train
    fitted = doc_codes.fit(base, synthetic, synthetic.pseudo_queries, steps=150, lr=3e-3,
                           batch=t.distill_batch, top=t.distill_top, n_random=t.distill_random,
                           temperature=t.distill_temperature, seed=0, verbose=False)  # fmt: skip
    # the distillation loss over the whole corpus, at the smallest size, falls from the map's
    pq, small = synthetic.pseudo_queries, min(base.sizes)
    assert _corpus_kl(fitted, synthetic, pq, small) < 0.9 * _corpus_kl(base, synthetic, pq, small)
    # the fitted corpus gets its codes; a copy with one row changed goes through the map
    d = base.sizes[1]
    np.testing.assert_allclose(
        np.asarray(fitted.compress(synthetic.corpus, d)),
        np.asarray(retrieval.l2_normalize(jnp.asarray(fitted.codes[:, :d]))),
    )
    assert not np.allclose(fitted.codes, np.asarray(base.compress(synthetic.corpus, max(base.sizes))), atol=1e-3)  # fmt: skip
    changed = synthetic.corpus.copy()
    changed[5] += 1e-3
    np.testing.assert_array_equal(
        np.asarray(fitted.compress(changed, d)), np.asarray(base.compress(changed, d))
    )
    x = synthetic.queries[:4]
    np.testing.assert_array_equal(
        np.asarray(fitted.compress_queries(x, d)), np.asarray(base.compress_queries(x, d))
    )
    doc_codes.save(fitted, tmp_path / "corpus_codes.npz", synthetic.corpus_ids)
    with np.load(tmp_path / "corpus_codes.npz") as f:
        assert f["ids"].tolist() == synthetic.corpus_ids
        np.testing.assert_array_equal(f["codes"], fitted.codes)


def test_launch_compress_writes_the_fitted_codes_for_their_corpus_only(tmp_path, synthetic):
    """``launch.compress --corpus_codes`` serves the fitted codes (the same vectors the
    compressor scores with), and refuses codes of another corpus or for queries."""
    cfg = methods.get("distill_pseudo").resolve(tiny_config())
    cfg.train.steps_per_stage = 5
    base = train.train(cfg, synthetic, None, verbose=False).compressor
    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(synthetic.corpus_ids), max(base.sizes))).astype(np.float32)
    fitted = doc_codes.CorpusCodes(base, table, doc_codes.digest(synthetic.corpus))
    npz = export.save(base, tmp_path / "compressor.npz")
    doc_codes.save(fitted, tmp_path / "corpus_codes.npz", synthetic.corpus_ids)
    np.save(tmp_path / "corpus.npy", synthetic.corpus)
    (tmp_path / "ids.txt").write_text("\n".join(synthetic.corpus_ids) + "\n")
    d = base.sizes[1]
    kw = dict(size=d, precision="float32", ids_file=str(tmp_path / "ids.txt"), verbose=False)
    out = compress.compress_embeddings(npz, tmp_path / "corpus.npy", tmp_path / "c",
                                       corpus_codes=tmp_path / "corpus_codes.npz", **kw)  # fmt: skip
    got, ids, _ = codes_folder.load_codes(out)
    assert ids == synthetic.corpus_ids
    np.testing.assert_allclose(got, np.asarray(fitted.compress(synthetic.corpus, d)), atol=1e-6)
    (tmp_path / "ids.txt").write_text("\n".join(["x", *synthetic.corpus_ids[1:]]) + "\n")
    with pytest.raises(DataError, match="row 0 is document 'd0' but the input's row 0 is 'x'"):
        compress.compress_embeddings(npz, tmp_path / "corpus.npy", tmp_path / "e",
                                     corpus_codes=tmp_path / "corpus_codes.npz", **kw)  # fmt: skip
    with pytest.raises(ValueError, match="use it with --part corpus"):
        compress.compress_embeddings(npz, tmp_path / "corpus.npy", tmp_path / "q", part="queries",
                                     corpus_codes=tmp_path / "corpus_codes.npz", **kw)  # fmt: skip
