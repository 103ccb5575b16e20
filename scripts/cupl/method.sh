#!/bin/bash
# CuPL (LLM-generated prompts, zero-shot): every run is --eval-only; the same output layout as the
# prompt methods. Descriptions: TRAINER.CUPL.ATTRIBUTE_FILE (default attribute_data/<dataset>.json). Sourced by the scripts of this folder.
TRAINER=CuPL
DEFAULT_CFG=vit_b16
EVAL_ONLY=1
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
