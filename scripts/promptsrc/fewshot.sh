#!/bin/bash
# Few-shot: train and test on all classes, with the PromptSRC paper's GPA for the dataset. Usage: fewshot.sh DATASET SHOTS SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_promptsrc_fewshot "$@"
