#!/bin/bash
# Few-shot table reference: CuPL on all classes of DATASET (nothing is trained; SHOTS only names
# the output folder so the row sits beside the prompt methods). Usage: fewshot.sh DATASET SHOTS SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_fewshot "$@"
