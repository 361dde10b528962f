"""A trained compressor in the tools people serve with: sentence-transformers and ONNX.

* :func:`to_sentence_transformers` appends the compressor to a SentenceTransformer as
  modules (the permuted linear map as a ``Dense`` with identity activation, then
  ``Normalize``) and records the trained sizes, so
  ``SentenceTransformer(folder).encode(texts, truncate_dim=d, normalize_embeddings=True)``
  gives the SMEC vectors of size d for raw texts. An asymmetric compressor becomes a
  ``Router`` with a query route and a document route: ``encode_query`` and
  ``encode_document`` (plain ``encode`` is the document route).
* :func:`to_onnx` writes ``compressor.onnx``, built with the ``onnx`` package (no torch):
  embedding (n, D) and size (a scalar int64 graph input) -> the unit size-d prefix:
  MatMul, Add (then ReLU, MatMul, Add and the residual for the residual MLP), Slice, and an
  L2 normalisation. An asymmetric compressor's graph has a second output, ``query_codes``:
  the same embedding input mapped as queries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from smec_jax import files
from smec_jax.core import export
from smec_jax.serving import codes_folder

SIZES_FILE = "smec_compressor.json"


def to_sentence_transformers(compressor: str | Path, encoder: str, out: str | Path) -> Path:
    """Writes a SentenceTransformer folder: ``encoder``'s modules + the compressor."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Router

    from smec_jax.datasets import encode

    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; remove it or choose another --out")
    files.check_workdir(out, "--out")
    exported = export.load_numpy(compressor)
    if "w1" in exported:
        raise ValueError(
            f"{compressor} is a residual MLP; the sentence-transformers export takes the linear "
            "kind (use --format onnx for a residual MLP)"
        )
    base = encode.load_sentence_transformer(encode.resolve_model(encoder))
    get_dim = (
        getattr(base, "get_embedding_dimension", None) or base.get_sentence_embedding_dimension
    )
    dim = get_dim()
    if dim != export.input_dim(exported):
        raise ValueError(
            f"{compressor} takes {export.input_dim(exported)}-d embeddings but {encoder} "
            f"gives {dim}-d ones"
        )
    modules = list(base)
    if not any(isinstance(m, Normalize) for m in modules[-1:]):
        modules.append(Normalize())  # the compressor was trained on unit embeddings

    def dense(w, b):
        return Dense(
            w.shape[0],
            w.shape[1],
            bias=True,
            activation_function=torch.nn.Identity(),
            init_weight=torch.tensor(w.T.copy()),
            init_bias=torch.tensor(b.copy()),
        )

    head = [dense(exported["w"], exported["b"]), Normalize()]
    if export.is_asymmetric(exported):
        query_head = [dense(exported["wq"], exported["bq"]), Normalize()]
        head = [Router.for_query_document(query_modules=query_head, document_modules=head)]
    model = SentenceTransformer(modules=[*modules, *head], device="cpu")
    tmp = out.with_name(out.name + ".partial")
    model.save(str(tmp))
    meta = {
        "sizes": [int(s) for s in exported["sizes"]],
        "compressor_sha256": codes_folder.file_sha256(export.npz_path(compressor)),
        "usage": "encode(texts, truncate_dim=d, normalize_embeddings=True), d in sizes",
    }
    if export.is_asymmetric(exported):
        meta["usage"] = (
            "encode_query(texts, truncate_dim=d, normalize_embeddings=True) for queries, "
            "encode_document(...) for documents, d in sizes"
        )
    files.write_json(tmp / SIZES_FILE, meta)
    tmp.rename(out)
    return out


def trained_sizes(folder: str | Path) -> list[int]:
    return json.loads((Path(folder) / SIZES_FILE).read_text())["sizes"]


def to_onnx(compressor: str | Path, out: str | Path, opset: int = 17) -> Path:
    """Writes the compressor as an ONNX graph with inputs ``embedding`` (n, D) float32 and
    ``size`` () int64, output ``codes`` (n, size) float32 unit vectors (and
    ``query_codes``, the embeddings mapped as queries, for an asymmetric compressor)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    exported = export.load_numpy(compressor)
    d_in = export.input_dim(exported)
    init = [
        numpy_helper.from_array(np.asarray(exported[k], np.float32), k)
        for k in ("w", "b", "w1", "b1", "wq", "bq")
        if k in exported
    ]
    init += [
        numpy_helper.from_array(np.asarray([0], np.int64), "zero"),
        numpy_helper.from_array(np.asarray([1], np.int64), "axis1"),
        numpy_helper.from_array(np.asarray([1e-12], np.float32), "eps"),
        numpy_helper.from_array(np.asarray([1], np.int64), "one_dim"),
    ]
    nodes = []
    if "w1" in exported:
        nodes += [
            helper.make_node("MatMul", ["embedding", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h"]),
            helper.make_node("MatMul", ["h", "w"], ["y0"]),
            helper.make_node("Add", ["y0", "b"], ["y1"]),
            helper.make_node("Add", ["embedding", "y1"], ["y"]),
        ]
    else:
        nodes += [
            helper.make_node("MatMul", ["embedding", "w"], ["y0"]),
            helper.make_node("Add", ["y0", "b"], ["y"]),
        ]
    nodes.append(helper.make_node("Reshape", ["size", "one_dim"], ["end"]))

    def unit_prefix(y: str, out: str) -> list:
        return [
            helper.make_node("Slice", [y, "zero", "end", "axis1"], [f"{out}_prefix"]),
            helper.make_node("ReduceL2", [f"{out}_prefix"], [f"{out}_n0"], axes=[1], keepdims=1),
            helper.make_node("Max", [f"{out}_n0", "eps"], [f"{out}_norm"]),
            helper.make_node("Div", [f"{out}_prefix", f"{out}_norm"], [out]),
        ]

    nodes += unit_prefix("y", "codes")
    outputs = [helper.make_tensor_value_info("codes", TensorProto.FLOAT, ["n", "size"])]
    if export.is_asymmetric(exported):
        nodes += [
            helper.make_node("MatMul", ["embedding", "wq"], ["yq0"]),
            helper.make_node("Add", ["yq0", "bq"], ["yq"]),
            *unit_prefix("yq", "query_codes"),
        ]
        outputs.append(
            helper.make_tensor_value_info("query_codes", TensorProto.FLOAT, ["n", "size"])
        )
    graph = helper.make_graph(
        nodes,
        "smec_compressor",
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", d_in]),
            helper.make_tensor_value_info("size", TensorProto.INT64, []),
        ],
        outputs,
        init,
    )
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="smec-jax"
    )
    m.metadata_props.add(key="sizes", value=json.dumps([int(s) for s in exported["sizes"]]))
    onnx.checker.check_model(m)
    return files.atomic_write(out, m.SerializeToString())
