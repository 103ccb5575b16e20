#!/bin/bash
# Few-shot: train and test on all classes, with upstream's config for the shot count and its lambda for the dataset (see method.sh). Usage: fewshot.sh DATASET SHOTS SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
prograd_fewshot_setup "$@"
run_fewshot "$@"
