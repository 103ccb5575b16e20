#!/bin/bash
# SemPT. Sourced by the scripts of this folder. ImageNet (cross-dataset / domain
# generalization source) uses the 50-epoch config, as CoOp does for ImageNet.
TRAINER=SemPT
DEFAULT_CFG=vit_b16_ep100_ctxv1
DEFAULT_CFG_IMAGENET=vit_b16_ep50_ctxv1
# On the synthetic world: the MaPLe label branch, which tools/sempt_sweep.py chose on base
# classes only (README, "What the main job shows"); synthetic.yaml is the CoOp branch.
DATASET_CFGS="synthetic=synthetic_maple"
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
