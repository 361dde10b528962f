#!/usr/bin/env bash
# method=auto on SciFact and NFCorpus (all-MiniLM-L6-v2), with judgments (the BEIR folder:
# candidates chosen on validation nDCG@10) and without (data.source=arrays: the corpus, the
# queries as an unjudged log and the test judgments for scoring only: candidates chosen on
# top-10 agreement over a held-out fifth of the log), 3 seeds. Every candidate is scored on
# the test queries too (results.json rows "auto:<name>"), to show whether validation chose
# well. Summarised by docs/results/auto-minilm/summarize.py into summary.md.
set -euo pipefail
DATA=${SMEC_DATA_DIR:-../shared/data}
OUT=docs/results/auto-minilm
for seed in 0 1 2; do
  for ds in scifact nfcorpus; do
    EMB=$DATA/$ds/embeddings/all-MiniLM-L6-v2
    W=runs/auto/$ds-judged-$seed
    [ -f $W/results.json ] || python -m launch.train --config.method=auto \
      --config.data.dataset=$ds --config.seed=$seed --workdir $W
    W=runs/auto/$ds-unjudged-$seed
    [ -f $W/results.json ] || python -m launch.train --config.method=auto \
      --config.data.source=arrays --config.data.corpus=$EMB/corpus.npy \
      --config.data.corpus_ids=$EMB/corpus_ids.txt --config.data.queries=$EMB/queries.npy \
      --config.data.query_ids=$EMB/query_ids.txt --config.data.test_qrels=$DATA/$ds/qrels/test.tsv \
      --config.seed=$seed --workdir $W
    for kind in judged unjudged; do
      mkdir -p $OUT/$ds-$kind-$seed
      cp runs/auto/$ds-$kind-$seed/{auto,results}.json $OUT/$ds-$kind-$seed/
    done
  done
done
python docs/results/auto-minilm/summarize.py > $OUT/summary.md
