"""The paper and its primitives: SMRL, ADS, S-XBM, losses, the nested compressor, codes, exact retrieval."""
