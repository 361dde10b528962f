#!/usr/bin/env bash
# docs/results/pareto-scifact-minilm-learned-pq/commands.sh on NFCorpus (all-MiniLM-L6-v2):
# the learned product quantizer against the free codes at 16 and 32 B, 3 seeds.
set -euo pipefail
python -m launch.pareto --workdir runs/pareto-nfcorpus-learned-pq --methods truncate,pca,distill_pq \
  --seeds 0,1,2 --pq_bytes 16,32 --opq_iterations 20 --config.ladder="(384,128)" \
  --config.data.dataset=nfcorpus --config.pq.steps=600
mkdir -p docs/results/pareto-nfcorpus-minilm-learned-pq
cp runs/pareto-nfcorpus-learned-pq/{pareto.json,pareto.md,pareto.png,per_query.npz} \
  docs/results/pareto-nfcorpus-minilm-learned-pq/
