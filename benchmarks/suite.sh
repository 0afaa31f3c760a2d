#!/usr/bin/env bash
# Every system's benchmark, jaxtrain beside its PyTorch reference, one JSON line each appended
# to benchmarks/results.jsonl. Batch sizes are the GPU benchmark sizes (they fill an H100; the
# CPU rows of RESULTS.md use the configs' own batches: `SUITE_CPU=1 bash benchmarks/suite.sh`).
#   bash benchmarks/suite.sh [extra flags for every run, e.g. --steps=20]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [[ -n "${SUITE_CPU:-}" ]]; then
  runs=(
    "configs/fire.py"
    "configs/das.py:tcn"
    "configs/das.py:bilstm"
    "configs/das.py:transformer"
    "configs/debris.py"
    "configs/debris.py --config.model.base_width=64 --config.train.batch_size=4"
    "configs/glaucoma.py"
  )
else
  runs=(
    "configs/fire.py --config.train.batch_size=4096"
    "configs/das.py:tcn --config.train.batch_size=512"
    "configs/das.py:bilstm --config.train.batch_size=512"
    "configs/das.py:transformer --config.train.batch_size=512"
    # DAS streamed by blocks (the 300 GB case), groups of 32 blocks to hold a batch of 512
    "configs/das.py:tcn --config.train.batch_size=512 --config.data.on_device=never --config.data.stream_shuffle_blocks=32"
    "configs/debris.py:seed --config.train.batch_size=32 --config.data.num_patches=200"
    "configs/glaucoma.py:seed --config.data.synthetic.num_images=400 --config.data.synthetic.size=512"
  )
fi
for run in "${runs[@]}"; do
  echo "== $run" >&2
  # shellcheck disable=SC2086  # each run is a config plus its own flags
  "$PY" -m benchmarks.run --config=$run --reference=torch --record "$@"
done
# The streaming input against this host's own disk (8 GiB through 2 GiB, page cache dropped).
echo "== DAS streaming vs the disk's sequential rate" >&2
if [[ -z "${SUITE_CPU:-}" ]]; then
  "$PY" -m benchmarks.das_memory --paths=blocks --workers=0 --direct_reads=true,false \
    --batch_size=512 --shuffle_blocks=32 --delete_data
fi
# Fire's data scaling (the seed's 5M-vs-50M comparison): whole runs, transformer + ensemble.
# CPU sizes: 50k, 200k, 500k readings with a small transformer; GPU sizes with the seed's model
# (50M readings: the ensemble's random forest on 2.9M windows needs more than 10 minutes).
echo "== fire data scaling" >&2
if [[ -n "${SUITE_CPU:-}" ]]; then
  "$PY" -m benchmarks.scaling
else
  "$PY" -m benchmarks.scaling --sizes=500000,5000000,50000000 --model=seed \
    --override=--config.train.batch_size=4096 --override=--config.data.in_memory_gib=4.0
fi
