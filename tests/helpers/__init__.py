"""Shared test helpers: the tiny config (configs/tiny.py) as an object and as flags."""

from configs import tiny

tiny_config = tiny.get_config


def tiny_overrides() -> dict[str, object]:
    """configs/tiny.py as ``{"dotted.field": value}``, to shrink another config file (the
    pod's) to the same tiny run: its data, ladder and every train and memory field (memory
    sharding stays the other file's), and its method."""
    t = tiny.get_config()
    out: dict[str, object] = {"data.source": t.data.source}
    out.update({f"data.synthetic.{k}": v for k, v in t.data.synthetic.items()})
    out["ladder"] = tuple(t.ladder)
    out["method"] = t.method
    for section in ("train", "memory"):
        for k, v in t[section].items():
            if (section, k) != ("memory", "sharded"):
                out[f"{section}.{k}"] = v
    return out


def pod_config():
    """configs/tpu_pod.py shrunk to the tiny run (:func:`tiny_overrides`; its memory stays
    sharded): the config the pod launch trains in the tests."""
    from configs import tpu_pod
    from smec_jax import methods

    return methods.apply_overrides(tpu_pod.get_config(), tiny_overrides())


def tiny_flags() -> list[str]:
    """:func:`tiny_overrides` as ``--config.x=y`` flags."""
    out = []
    for dotted, v in tiny_overrides().items():
        v = "(" + ",".join(map(str, v)) + ")" if isinstance(v, tuple) else v
        out.append(f"--config.{dotted}={v}")
    return out


def write_beir(root, name, corpus_ids, corpus, query_ids, queries, qrels, encoder="enc"):
    """A BEIR folder with texts, qrels and an embedding folder ``embeddings/<encoder>`` whose
    meta.json carries the text fingerprint, as ``launch.embed`` writes it."""
    import json
    from pathlib import Path

    import numpy as np

    from smec_jax.datasets import data

    ds = Path(root) / name
    (ds / "qrels").mkdir(parents=True)
    corpus_rows = [{"_id": i, "title": "", "text": f"text of {i}"} for i in corpus_ids]
    query_rows = [{"_id": i, "text": f"query {i}"} for i in query_ids]
    for fname, rows in (("corpus.jsonl", corpus_rows), ("queries.jsonl", query_rows)):
        (ds / fname).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for split, judged in qrels.items():
        lines = [f"{q}\t{d}\t{g}\n" for q, docs in judged.items() for d, g in docs.items()]
        (ds / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(lines))
    data.write_embedding_folder(
        ds / "embeddings" / encoder,
        list(corpus_ids),
        np.asarray(corpus, np.float32),
        list(query_ids),
        np.asarray(queries, np.float32),
        {
            "model": encoder,
            "fingerprint": {
                "corpus": data.text_fingerprint(corpus_rows, data.doc_text),
                "queries": data.text_fingerprint(query_rows, data.query_text),
            },
        },
    )
    return ds


def arguana_style(root):
    """A corpus whose queries are also its documents (same id, same vector), each relevant
    to another, nearby document: a query's own document is a free hit unless
    ``eval.exclude_self`` drops it. Returns the tiny config pointed at it."""
    import numpy as np

    rng = np.random.default_rng(0)
    n_docs, n_q, dim = 200, 60, 32
    docs = rng.normal(size=(n_docs, dim))
    docs[100 : 100 + n_q] = docs[:n_q] + 0.3 * rng.normal(size=(n_q, dim))
    ids = [f"d{i}" for i in range(n_docs)]
    qids = ids[:n_q]
    qrels = {
        "train": {ids[i]: {ids[100 + i]: 1} for i in range(40)},
        "test": {ids[i]: {ids[100 + i]: 1} for i in range(40, n_q)},
    }
    write_beir(root, "selfish", ids, docs, qids, docs[:n_q], qrels)
    cfg = tiny_config()
    cfg.data.update(source="beir", root=str(root), dataset="selfish", encoder="enc")
    cfg.ladder = (32, 16)
    return cfg
