"""Serving: compressing a corpus into codes, faiss indexes, the rescoring funnel, ONNX and sentence-transformers export."""
