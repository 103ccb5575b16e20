#!/bin/bash
# Few-shot: train and test on all classes. Usage: fewshot.sh DATASET SHOTS SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
# Upstream ships no few-shot config; ours (see its header) serves every dataset, ImageNet included.
DEFAULT_CFG=vit_b16_c2_ep50_batch4_2ctx_few_shot DEFAULT_CFG_IMAGENET="" run_fewshot "$@"
