#!/usr/bin/env bash
# The learned product quantizer (distill_pq: faiss OPQ + PQ codes on the corpus's top 128
# principal axes, trained by listwise distillation on pseudo-queries, 600 steps of 64
# queries per budget) against the free codes at 16 and 32 B per document on SciFact
# (all-MiniLM-L6-v2), 3 seeds: truncation (the original 384-d embeddings) and PCA 128-d with
# faiss PQ, OPQ + PQ (20 OPQ iterations) and RaBitQ codes, and their scalar / ITQ codes.
set -euo pipefail
python -m launch.pareto --workdir runs/pareto-learned-pq --methods truncate,pca,distill_pq \
  --seeds 0,1,2 --pq_bytes 16,32 --opq_iterations 20 --config.ladder="(384,128)" \
  --config.pq.steps=600
mkdir -p docs/results/pareto-scifact-minilm-learned-pq
cp runs/pareto-learned-pq/{pareto.json,pareto.md,pareto.png,per_query.npz} \
  docs/results/pareto-scifact-minilm-learned-pq/
