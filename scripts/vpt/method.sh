#!/bin/bash
# VPT-deep (8 visual prompt tokens in all 12 image blocks, the text side frozen on the dataset's
# template; the MaPLe paper's baseline). Sourced by the scripts of this folder. As upstream's xd
# scripts, ImageNet trains with the base-to-novel config.
TRAINER=VPT
DEFAULT_CFG=vit_b16_c2_ep5_batch4_4
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
