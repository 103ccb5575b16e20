#!/bin/bash
# DCLIP (classification by description, zero-shot): every run is --eval-only; the same output layout as the
# prompt methods. Descriptions: TRAINER.DCLIP.ATTRIBUTE_FILE (default attribute_data/<dataset>.json). Sourced by the scripts of this folder.
TRAINER=DCLIP
DEFAULT_CFG=vit_b16
EVAL_ONLY=1
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
