#!/usr/bin/env bash
# method=auto with a byte budget (--config.auto.budget_bytes) on SciFact and NFCorpus
# (all-MiniLM-L6-v2), with judgments and without, 3 seeds: the runs of
# docs/results/auto-minilm/commands.sh again, each candidate resumed from that run's
# checkpoints (a budget changes how candidates are scored, not how they train), scored at
# every (size, precision) code within the budget on validation; launch.train then scores
# each candidate's validation-best code on the test queries and the choice against the best
# free code (pca / truncate) with a paired interval (results.json "budget").
# Summarised by docs/results/auto-budget-minilm/summarize.py into summary.md.
set -euo pipefail
DATA=${SMEC_DATA_DIR:-../shared/data}
OUT=docs/results/auto-budget-minilm
for budget in ${BUDGETS:-32 16}; do
for seed in 0 1 2; do
  for ds in scifact nfcorpus; do
    EMB=$DATA/$ds/embeddings/all-MiniLM-L6-v2
    for kind in judged unjudged; do
      W=runs/auto-b$budget/$ds-$kind-$seed
      mkdir -p $W
      # the candidates trained by docs/results/auto-minilm/commands.sh, where present
      [ -d $W/auto ] || [ ! -d runs/auto/$ds-$kind-$seed/auto ] || cp -r runs/auto/$ds-$kind-$seed/auto $W/
    done
    W=runs/auto-b$budget/$ds-judged-$seed
    [ -f $W/results.json ] || python -m launch.train --config.method=auto \
      --config.data.dataset=$ds --config.seed=$seed --config.auto.budget_bytes=$budget --workdir $W
    W=runs/auto-b$budget/$ds-unjudged-$seed
    [ -f $W/results.json ] || python -m launch.train --config.method=auto \
      --config.data.source=arrays --config.data.corpus=$EMB/corpus.npy \
      --config.data.corpus_ids=$EMB/corpus_ids.txt --config.data.queries=$EMB/queries.npy \
      --config.data.query_ids=$EMB/query_ids.txt --config.data.test_qrels=$DATA/$ds/qrels/test.tsv \
      --config.seed=$seed --config.auto.budget_bytes=$budget --workdir $W
    for kind in judged unjudged; do
      mkdir -p $OUT/b$budget/$ds-$kind-$seed
      cp runs/auto-b$budget/$ds-$kind-$seed/{auto,results}.json $OUT/b$budget/$ds-$kind-$seed/
    done
  done
done
done
python docs/results/auto-budget-minilm/summarize.py > $OUT/summary.md
