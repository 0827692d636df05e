#!/usr/bin/env bash
# Contrastive training of the default smollm2-135m on real text pairs (issue 15): a fresh LoRA on the
# merged default adapters (MNTP + SimCSE + SimCSE2), trained with `llm2vec-rag train supervised` on the
# pairs of benchmarks/pairs/build_pairs.py: in-batch + BM25 hard negatives, one source per batch, CoSENT
# on the scored STS-B train pairs, gradient caching (batch 96 in chunks of 32). Dev figures every 20 steps
# (and before the first) on STS-B dev and a fixed sample of 100 SciFact TRAIN queries over 400 documents
# (their relevant ones + distractors): never a test split.
# The recipe fits one 3-hour session on 2 quiet cores (about 30 s a step at batch 64 with 2 threads):
# 160 steps x 64 pairs. STEPS/BATCH/LR/THREADS override it (the session-6 plan was 800 x 96 at lr 1e-4 on
# one thread: about 13 hours). Run it in the background; rerunning resumes from the last checkpoint.
#   nohup benchmarks/train_pairs_default.sh > /work/runs/pairs-default/run.log 2>&1 &
# Progress: tail -c 400 /work/runs/pairs-default/run.log; tail -3 /work/runs/pairs-default/adapter/train_log.jsonl
# Dev figures: grep eval /work/runs/pairs-default/run.log (also in each checkpoint's state.json)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LLM2VEC_RAG_DATA:-../shared/data}
RUN=${RUN:-/work/runs/pairs-default}
PAIRS_CACHE=${PAIRS_CACHE:-$HOME/.cache/llm2vec-rag/pairs}
W=llm2vec_rag/weights/smollm2-135m
mkdir -p "$RUN"
source .venv/bin/activate
STEPS=${STEPS:-160} BATCH=${BATCH:-64} LR=${LR:-2e-4} THREADS=${THREADS:-2} EVAL_EVERY=${EVAL_EVERY:-40}
export OMP_NUM_THREADS=$THREADS TOKENIZERS_PARALLELISM=false

# the run trains on its own frozen copy of the pairs (a later rebuild cannot change a run half-way)
if [ ! -f "$RUN/pairs.jsonl" ]; then
  [ -f "$PAIRS_CACHE/pairs.jsonl" ] || python benchmarks/pairs/build_pairs.py --out "$PAIRS_CACHE"
  cp "$PAIRS_CACHE/pairs.jsonl" "$RUN/pairs.jsonl.tmp" && cp "$PAIRS_CACHE/summary.json" "$RUN/pairs_summary.json"
  mv "$RUN/pairs.jsonl.tmp" "$RUN/pairs.jsonl"
fi

llm2vec-rag train supervised "$RUN/pairs.jsonl" --model smollm2-135m-base \
  --adapter $W/1-mntp --adapter $W/2-simcse --adapter $W/3-simcse2 \
  --output-dir "$RUN/adapter" --steps "$STEPS" --batch-size "$BATCH" --mini-batch-size 32 --max-length 64 \
  --negatives-per-query 1 --lr "$LR" --warmup-steps 10 --seed 42 --threads "$THREADS" \
  --save-every 5 --keep-checkpoints 2 --log-every 1 \
  --eval-every "$EVAL_EVERY" --eval-data "$DATA/stsb" --eval-data "$DATA/scifact" --eval-split dev,train \
  --eval-max-queries 100 --eval-max-items 400 --resume
