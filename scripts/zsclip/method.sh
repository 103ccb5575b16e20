#!/bin/bash
# Zero-shot CLIP: every run is --eval-only; the same output layout as the prompt methods. Sourced by the scripts of this folder.
TRAINER=ZeroshotCLIP
CFG_DIR=CoOp  # zero-shot reads only INPUT and the backbone of a CoOp config
DEFAULT_CFG=vit_b16
EVAL_ONLY=1
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
