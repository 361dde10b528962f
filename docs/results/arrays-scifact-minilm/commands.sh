#!/usr/bin/env bash
# The SciFact MiniLM corpus matrix alone (no queries, no judgments, no BEIR folder) through
# launch.train, then its compressor's top-10 agreement with the full-size ranking on
# SciFact's 300 judged test queries (judgments unread), against PCA fitted on the same matrix.
set -euo pipefail
EMB=../shared/data/scifact/embeddings/all-MiniLM-L6-v2
OUT=docs/results/arrays-scifact-minilm
python -m launch.train --config.data.source=arrays --config.data.corpus=$EMB/corpus.npy \
  --workdir runs/scifact-arrays                     # auto.json, agreement.json, compressor.npz
python -m launch.train --config.data.source=arrays --config.data.corpus=$EMB/corpus.npy \
  --config.method=pca --workdir runs/scifact-arrays-pca
tail -n +2 ../shared/data/scifact/qrels/test.tsv | cut -f1 | awk '!seen[$0]++' > $OUT/test_query_ids.txt
python -m launch.agreement --embeddings $EMB --compressor runs/scifact-arrays/compressor.npz \
  --query_ids $OUT/test_query_ids.txt --versus runs/scifact-arrays-pca/compressor.npz \
  --out $OUT/test_agreement.json
cp runs/scifact-arrays/{auto,agreement,config}.json $OUT/
