"""smec-jax: compress the embeddings of a frozen retrieval encoder.

    import smec_jax
    comp = smec_jax.fit(docs)                 # numpy (n, D) in; the method chosen for you
    d64 = comp.encode_documents(docs, size=64, precision="int8")
    comp.save("my_compressor/");  comp = smec_jax.load("my_compressor/")

See :mod:`smec_jax.api`; the commands are ``python -m launch.*`` (README).
"""

__all__ = ["fit", "load", "EmbeddingCompressor"]


def __getattr__(name):  # the API loads JAX only when first used
    if name in __all__:
        from smec_jax import api

        return getattr(api, name)
    raise AttributeError(f"module 'smec_jax' has no attribute {name!r}")
