"""What each command does, as one library function (the launchers are flags plus a call).

* :func:`train_and_evaluate` — ``launch.train``: fit ``config.method`` (any registered
  method), score it next to ``config.eval.methods`` at every ladder size, write
  ``results.json``, ``ndcg_vs_dim.png``, ``config.json`` and, for a nested compressor,
  ``compressor.npz``.
* :func:`evaluate` — ``launch.evaluate``: fit and score ``config.eval.methods``.
* :func:`export` — ``launch.export``: the nested compressor of a finished run as ``.npz``.
* :func:`prepare` — ``launch.prepare``: the dataset as a tfds ``array_record`` dataset.
* :func:`embed` — ``launch.embed``: a BEIR folder embedded with a sentence-transformers model.

``launch.reproduce``, ``launch.analyze`` and ``launch.benchmark`` call
:mod:`smec_jax.studies.reproduction`, :mod:`smec_jax.studies.analyses` and :mod:`smec_jax.studies.profiling`.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from smec_jax import files, methods, parallel
from smec_jax.core import export as export_lib
from smec_jax.datasets import sources
from smec_jax.evaluation import fidelity, reporting
from smec_jax.evaluation.evaluator import Evaluator
from smec_jax.serving import codes_folder
from smec_jax.training import checks, doc_codes


def _evaluator(config, ds, n_dev: int) -> Evaluator:
    mesh = parallel.data_mesh(n_dev) if n_dev > 1 else None
    return Evaluator.from_config(ds, config.eval, mesh=mesh)


def train_and_evaluate(
    config,
    workdir: str,
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> dict:
    """Fits ``config.method`` (resumably in ``workdir``), then scores it with the baselines."""
    if config.distributed:  # first: nothing may touch the XLA backend before it
        parallel.initialize_distributed(coordinator_address, num_processes, process_id)
    methods.validate(config)
    if config.method in methods.pq.NAMES:
        raise ValueError(
            f"{config.method} stores codes priced in bytes, not sizes in dims: place it on "
            f"the bytes axis with python -m launch.pareto --methods truncate,pca,{config.method}"
        )
    files.check_workdir(workdir)
    ds = sources.load(config.data)
    only_test = set(ds.qrels) <= {config.eval.split}  # no judgments to train on
    if only_test and not methods.auto.label_free_ok(config.method, ds, config.train.split):
        print(
            f"{ds.name}: no training judgments, so only label-free methods are offered; "
            f"{config.method} needs judgments: training method auto (label-free candidates) "
            "instead",
            flush=True,
        )
        config = config.copy_and_resolve_references()
        config.method = methods.auto.NAME
    judged = config.eval.split in ds.qrels  # else: scored by agreement, no judgment read
    if not judged and config.data.source != "arrays":
        ds.qrels_for(config.eval.split)  # a BEIR folder without the scoring split: refused
    n_dev = config.mesh.num_devices or jax.device_count()
    resolved = config
    if config.method != methods.auto.NAME:
        method = methods.get(config.method)
        resolved = method.resolve(config)
        if method.seeded:  # a trained method: bad trainer fields fail before anything compiles
            checks.validate_trainer_config(resolved, ds, n_dev)
    print(
        f"{ds.name}: {len(ds.corpus_ids)} docs, {ds.dim}-d {ds.encoder or 'embeddings'}; "
        f"method {config.method}, ladder {tuple(config.ladder)}, {n_dev} device(s) "
        f"[{jax.default_backend()}]",
        flush=True,
    )
    if not judged:
        print(
            f"{ds.name}: no {config.eval.split!r} judgments: the result is scored by "
            f"top-{methods.auto.K} agreement with the full-size ranking",
            flush=True,
        )
    start = time.perf_counter()
    name, fitted, choice = methods.auto.fit_any(config, ds, workdir)
    print(f"trained in {time.perf_counter() - start:.1f}s; validation nDCG@10: {fitted.val_ndcg}")
    comps = {m: methods.get(m).fit(config, ds).compressor for m in config.eval.methods}
    if choice is not None:  # every candidate, scored too: did validation choose well?
        comps.update({f"auto:{n}": f.compressor for n, f in choice.fits.items()})
    comps[name] = fitted.compressor
    doc = None
    if judged:
        evaluator = _evaluator(config, ds, n_dev)
        per_query: dict = {}
        results = evaluator.evaluate(comps, config.ladder, per_query)
        doc = reporting.results_document(ds, evaluator.split, results, evaluator.n_unseen)
        ladder = [int(d) for d in config.ladder]
        compressed = ladder[1:] or ladder  # the first size is the original
        size = min(compressed, key=lambda d: (abs(d - config.eval.verdict_size), d))
        doc["verdict"] = reporting.verdict(
            name, size, ladder, per_query, evaluator.unseen_mask, config.eval.methods
        )
        if choice is not None and choice.point:  # auto with a byte budget
            doc["budget"] = methods.auto.budget_on_test(choice, evaluator)
    if jax.process_index() == 0:  # every process scored; one writes
        files.atomic_write(Path(workdir) / "config.json", resolved.to_json(indent=1) + "\n")
        if doc is not None:
            reporting.report(doc, workdir)
            print(reporting.verdict_lines(doc["verdict"]))
            if "budget" in doc:
                print(reporting.budget_lines(doc["budget"]))
        else:
            doc = fidelity.report_unjudged(comps, ds, config.ladder, workdir)
        comp = fitted.compressor
        if comp.corpus_codes() is not None:  # the corpus's codes, then its map
            doc_codes.save(comp, Path(workdir) / "corpus_codes.npz", ds.corpus_ids)
            print(f"wrote {workdir}/corpus_codes.npz")
        nested = export_lib.nested_of(comp, config.ladder)
        if nested is not None:
            path = export_lib.save(nested, Path(workdir) / "compressor.npz", ds.encoder)
            print(f"wrote {path}")
    return doc


def evaluate(config, workdir: str) -> dict:
    """Fits ``config.eval.methods``, scores them at every ladder size, writes the report."""
    methods.validate(config)
    files.check_workdir(workdir)
    ds = sources.load(config.data)
    ds.qrels_for(config.eval.split)
    ladder = tuple(int(d) for d in config.ladder)
    if ladder[0] > ds.dim:
        raise ValueError(f"ladder {ladder} starts above the embedding size {ds.dim}")
    fitted = {m: methods.get(m).fit(config, ds).compressor for m in config.eval.methods}
    evaluator = _evaluator(config, ds, jax.device_count())
    start = time.perf_counter()
    results = evaluator.evaluate(fitted, ladder)
    print(
        f"scored {len(fitted)} methods x {len(ladder)} sizes in {time.perf_counter() - start:.2f}s"
    )
    doc = reporting.results_document(ds, evaluator.split, results, evaluator.n_unseen)
    reporting.report(doc, workdir)
    return doc


def _stage_label(stage, index_manifest) -> str:
    """``384-d float16 top 100``; codes of another compressor than the index's (e.g. the
    original embeddings) are named by their folder."""
    m = codes_folder.read_manifest(stage.doc_codes)
    other = m.compressor_sha256 != index_manifest.compressor_sha256
    return f"{m.size}-d {m.precision}{f' of {Path(stage.doc_codes).name}' if other else ''} top {stage.keep}"


def export_original(config, out: str | None) -> Path:
    """Writes the identity map of the config's embeddings (:func:`export.original`) as a
    compressor .npz, so that the original vectors can be coded like any compressor's."""
    methods.validate(config)
    if not out:
        raise ValueError("--original needs --out (the .npz to write)")
    ds = sources.load(config.data)
    path = export_lib.save(export_lib.original(ds.corpus.shape[1]), out, ds.encoder)
    print(f"wrote {path} (the original {ds.corpus.shape[1]}-d {ds.encoder} embeddings)")
    return path


def export(
    config, workdir: str, out: str | None = None, fmt: str = "npz", encoder: str | None = None
) -> Path:
    """Writes the nested compressor of the finished run in ``workdir`` (no retraining) as
    ``compressor.npz`` (``fmt="npz"``), a SentenceTransformer folder appending it to
    ``encoder`` (``"sentence_transformers"``) or ``compressor.onnx`` (``"onnx"``)."""
    from smec_jax.serving import interop

    if fmt not in ("npz", "sentence_transformers", "onnx"):
        raise ValueError(f"unknown --format {fmt!r}; use npz, sentence_transformers or onnx")
    if fmt == "sentence_transformers" and not encoder:
        raise ValueError("--format sentence_transformers needs --encoder (a model name or folder)")
    if fmt != "npz":
        npz = Path(workdir) / "compressor.npz"
        if not npz.is_file():
            export(config, workdir)
        if fmt == "onnx":
            path = interop.to_onnx(npz, out or Path(workdir) / "compressor.onnx")
        else:
            path = interop.to_sentence_transformers(npz, encoder, out or Path(workdir) / "st_model")
        print(f"wrote {path}")
        return path
    methods.validate(config)
    done = "auto.json" if config.method == methods.auto.NAME else "checkpoints"
    if not workdir or not (Path(workdir) / done).exists():
        raise ValueError(f"no {done} in {workdir}; train first with launch.train")
    ds = sources.load(config.data)
    _, fit, _ = methods.auto.fit_any(config, ds, workdir, verbose=False)
    # with free corpus codes: the map (codes: corpus_codes.npz)
    comp = export_lib.nested_of(fit.compressor, config.ladder)
    if comp is None:
        raise ValueError(f"method {config.method!r} has no nested compressor to export")
    path = export_lib.save(comp, out or Path(workdir) / "compressor.npz", ds.encoder)
    print(f"wrote {path} (sizes {comp.sizes})")
    return path


def prepare(config, out: str) -> Path:
    """Packages the config's dataset as a tfds array_record dataset in ``out``."""
    from smec_jax.datasets import tfds_dataset

    methods.validate(config)
    files.check_workdir(out, "--out")
    rd = sources.load(config.data)
    path = tfds_dataset.write_tfds(rd, out)
    print(f"wrote {rd.name} ({len(rd.corpus_ids)} docs, splits {sorted(rd.qrels)}) to {path}")
    return path


def embed(
    beir_dir: str,
    model: str,
    out: str | None = None,
    *,
    batch_size: int = 32,
    chunk: int = 512,
    dtype: str = "float16",
    device: str = "cpu",
    pseudo_queries: str | None = None,
    from_sts: str | None = None,
) -> Path:
    """Embeds a BEIR folder with a sentence-transformers model (resumable by chunks); with
    ``pseudo_queries`` (a rule), the pseudo-queries made from its corpus instead; with
    ``from_sts`` (an STS Benchmark file), first writes its pairs as the BEIR folder
    ``beir_dir`` (:func:`smec_jax.datasets.pooling.sts_to_beir`) unless it is there already."""
    from smec_jax.datasets import encode, pooling
    from smec_jax.datasets import pseudo_queries as pq
    from smec_jax.datasets.data import DataError

    if from_sts and not (Path(beir_dir) / "corpus.jsonl").is_file():
        print(f"wrote {pooling.sts_to_beir(from_sts, beir_dir)} from {from_sts}")
    if not (Path(beir_dir) / "corpus.jsonl").is_file():  # before the model loads
        raise DataError(
            f"{beir_dir}: no corpus.jsonl here; give a BEIR folder (corpus.jsonl, "
            "queries.jsonl) or --from_sts with an STS Benchmark file"
        )

    model_path = encode.resolve_model(model)
    name = Path(model).name if Path(model).exists() else model
    fn = encode.sentence_transformer_encoder(model_path, batch_size, device)
    if pseudo_queries:
        out = out or str(Path(pq.DEFAULT_CACHE) / Path(beir_dir).name / name / pseudo_queries)
        path = pq.make(beir_dir, out, fn, model_name=name, rule=pseudo_queries, chunk=chunk)
        print(f"wrote {path}")
        return path
    out = out or str(Path(beir_dir) / "embeddings" / name)
    path = encode.encode_beir(beir_dir, out, fn, model_name=name, chunk=chunk, dtype=dtype)
    print(f"wrote {path}")
    return path


# ---------------------------------------------------------------------------- serving


def compress(
    compressor: str,
    source: str,
    out: str,
    *,
    part: str = "corpus",
    size: int | None = None,
    precision: str | None = None,
    like: str | None = None,
    ids_file: str | None = None,
    chunk: int = 65536,
    corpus_codes: str | None = None,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Path:
    """``launch.compress``: embeddings -> a codes folder (see :mod:`smec_jax.serving.compress`)."""
    from smec_jax.serving import compress as compress_lib

    if num_processes and num_processes > 1:
        parallel.initialize_distributed(coordinator_address, num_processes, process_id)
    path = compress_lib.compress_embeddings(
        compressor,
        source,
        out,
        part=part,
        size=size,
        precision=precision,
        like=like,
        ids_file=ids_file,
        chunk=chunk,
        corpus_codes=corpus_codes,
    )
    if jax.process_index() == 0:
        man = codes_folder.read_manifest(path)
        print(
            f"wrote {path}: {man.rows} x {man.size}-d {man.precision} codes, "
            f"{man.bytes_per_vector} bytes per vector"
        )
    return path


def build_index(codes_dir: str, kind: str, out: str, **params) -> Path:
    """``launch.index``: a faiss index over a codes folder, with its ids."""
    import shutil

    from smec_jax.serving import faiss_index, ivf

    files.check_workdir(out, "--out")
    if kind in faiss_index.IVF:  # block by block, merged on disk: any size
        return ivf.build(codes_dir, kind, out, **params)
    start = time.perf_counter()
    index = faiss_index.build(codes_dir, kind, **params)
    path = faiss_index.save(index, out)
    if index.manifest.shards:  # launch.compress_beam's shards: their ids, in order
        _, ids, _ = codes_folder.load_codes(codes_dir)
        files.atomic_write(path / "ids.txt", "".join(f"{i}\n" for i in ids).encode("utf-8"))
    else:
        shutil.copyfile(Path(codes_dir) / "ids.txt", path / "ids.txt")
    print(
        f"wrote {path}: {kind} index of {index.index.ntotal} vectors, "
        f"{faiss_index.disk_bytes(path):,} bytes on disk, built in {time.perf_counter() - start:.1f}s"
    )
    return path


def evaluate_index(
    config,
    index_dir: str,
    query_codes: str,
    workdir: str,
    *,
    rescore: list | None = None,
    shortlist: int | None = None,
) -> dict:
    """``launch.evaluate --index``: scores a faiss index's ranking of the split's queries;
    with ``rescore`` stages (:class:`smec_jax.serving.funnel.Rescore`), a funnel: the index's
    ``shortlist`` rescored by each stage's codes in turn."""
    from smec_jax.core import retrieval
    from smec_jax.datasets.data import DataError, read_ids
    from smec_jax.evaluation.evaluator import TOP_K
    from smec_jax.serving import faiss_index, funnel

    methods.validate(config)
    files.check_workdir(workdir)
    ds = sources.load(config.data)
    evaluator = Evaluator.from_config(ds, config.eval)
    index = faiss_index.load(index_dir)
    doc_ids = read_ids(Path(index_dir) / "ids.txt")
    unknown = next((d for d in doc_ids if d not in set(ds.corpus_ids)), None)
    if unknown is not None:
        raise DataError(f"{index_dir}: document id {unknown!r} is not in {ds.name}'s corpus")
    q_codes, q_ids, q_man = codes_folder.load_codes(query_codes)
    q_row = {q: i for i, q in enumerate(q_ids)}
    missing = next((q for q in evaluator.qids if q not in q_row), None)
    if missing is not None:
        raise DataError(f"{query_codes}: no codes for query {missing!r} of {ds.name}")
    sel = np.asarray([q_row[q] for q in evaluator.qids])
    k = TOP_K + int(evaluator.exclude_self)
    id_rank = retrieval.tie_ranks(retrieval.trec_tie_order(doc_ids))
    start = time.perf_counter()
    if rescore:
        rows, scores, read = funnel.funnel_search(
            index,
            np.asarray(q_codes[sel]),
            q_man,
            shortlist or k,
            rescore,
            evaluator.qids,
            doc_ids,
            id_rank,
        )
    else:  # every document tied at the cut is seen, then cut as the Evaluator cuts
        scores, rows = faiss_index.search_tie_complete(
            index, np.asarray(q_codes[sel]), q_man, k, id_rank
        )
        read = 0
    qps = len(sel) / (time.perf_counter() - start)
    ranked = faiss_index.ranked_by_trec_order(
        scores, rows, doc_ids, evaluator.qids, TOP_K, evaluator.exclude_self
    )
    row = evaluator.summarize(evaluator.score_ranking(ranked))
    man = index.manifest
    row |= {
        "bytes_per_vector": man.bytes_per_vector,
        "index_bytes": faiss_index.disk_bytes(index_dir),
        "queries_per_s": qps,
    }
    kind = "scan" if index.kind == "scan" else f"faiss {index.kind}"  # scan: no faiss
    name = f"{kind} ({man.precision})"
    size = man.size
    if rescore:
        last = codes_folder.read_manifest(rescore[-1].doc_codes)
        row["rescore_bytes_per_query"] = read
        stages = " -> ".join(_stage_label(s, man) for s in rescore)
        name = f"funnel: {kind} {man.size}-d {man.precision} top {shortlist or k} -> {stages}"
        size = last.size
    doc = reporting.results_document(
        ds, evaluator.split, {name: {str(size): row}}, evaluator.n_unseen
    )
    reporting.report(doc, workdir)
    return doc
