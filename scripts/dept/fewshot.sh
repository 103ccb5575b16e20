#!/bin/bash
# Few-shot: train and test on all classes. Usage: fewshot.sh DATASET SHOTS SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_fewshot "$@"
