set -e
cd "$(git rev-parse --show-toplevel)"
. .venv/bin/activate
E=../shared/data/scifact/embeddings/all-MiniLM-L6-v2
date
time python -m launch.embed --beir_dir ../shared/data/scifact --pseudo_queries sentences
date
time python -m launch.train --workdir runs/scifact-codes --config.method=distill_pseudo_codes --config.eval.split=train
python -m launch.compress --compressor runs/scifact-codes/compressor.npz --input $E --part corpus \
    --size 64 --precision int8 --corpus_codes runs/scifact-codes/corpus_codes.npz --out runs/serve-codes/corpus64i8
python -m launch.compress --compressor runs/scifact-codes/compressor.npz --input $E --part queries \
    --like runs/serve-codes/corpus64i8 --precision float32 --out runs/serve-codes/queries64
python -m launch.index --codes runs/serve-codes/corpus64i8 --kind sq8 --out runs/serve-codes/sq8
python -m launch.evaluate --index runs/serve-codes/sq8 --query_codes runs/serve-codes/queries64 --workdir runs/serve-codes/eval
python -m launch.compress --compressor runs/scifact-codes/compressor.npz --input $E --part corpus \
    --size 64 --precision float32 --corpus_codes runs/scifact-codes/corpus_codes.npz --out runs/serve-codes/corpus64f
python -m launch.compress --compressor runs/scifact-codes/compressor.npz --input $E --part queries \
    --like runs/serve-codes/corpus64f --out runs/serve-codes/queries64f
python -m launch.index --codes runs/serve-codes/corpus64f --kind flat --out runs/serve-codes/flat
python -m launch.evaluate --index runs/serve-codes/flat --query_codes runs/serve-codes/queries64f --workdir runs/serve-codes/evalf
time python -m launch.agreement --embeddings $E --compressor runs/scifact-codes/compressor.npz \
    --corpus_codes runs/scifact-codes/corpus_codes.npz --out runs/serve-codes/agreement.json
date
