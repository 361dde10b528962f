#!/usr/bin/env bash
# The free codes against faiss's product quantizers and a label-free compressor at 16 and
# 32 bytes per document: SciFact, all-MiniLM-L6-v2, one seed (distill_pseudo is trained);
# OPQ with 10 iterations (faiss: 50) to fit a 2-core CPU.
set -euo pipefail
python -m launch.pareto --workdir runs/pareto-pq --methods truncate,pca,distill_pseudo \
  --seeds 0 --pq_bytes 16,32 --opq_iterations 10
mkdir -p docs/results/pareto-scifact-minilm-pq
cp runs/pareto-pq/{pareto.json,pareto.md,pareto.png,per_query.npz} docs/results/pareto-scifact-minilm-pq/
