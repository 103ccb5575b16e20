#!/bin/bash
# MaPLe (prompt depth 9; 3 for ImageNet and the cross-dataset runs, as upstream). Sourced by the scripts of this folder.
TRAINER=MaPLe
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2ctx
DEFAULT_CFG_IMAGENET=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
