"""Retrieval data: BEIR and embedding folders, sources, synthetic and tfds data, encoding, pseudo-queries, pooling."""
