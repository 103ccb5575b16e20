#!/bin/bash
# CoOp few-shot (CoOp paper): RN50, 16 random context tokens. Usage: fewshot.sh DATASET SHOTS SEED [KEY VALUE ...]
# NCTX (16), CSC (False) and CTP (end) select the variant; CFG overrides the config,
# by default rn50_ep50 for 1 shot or ImageNet, rn50_ep100 for 2-4 shots, rn50 (200 epochs) otherwise.
source "$(dirname "$0")/method.sh"
NCTX="${NCTX:-16}" CSC="${CSC:-False}" CTP="${CTP:-end}"
if [[ "${2:-}" == 1 ]]; then DEFAULT_CFG=rn50_ep50
elif [[ "${2:-}" == 2 || "${2:-}" == 4 ]]; then DEFAULT_CFG=rn50_ep100
else DEFAULT_CFG=rn50; fi
DEFAULT_CFG_IMAGENET=rn50_ep50
FEWSHOT_TAG="_nctx${NCTX}_csc${CSC}_ctp${CTP}"
METHOD_OPTS=(TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP")
run_fewshot "$@"
