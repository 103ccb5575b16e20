#!/bin/bash
# TCP. Sourced by the scripts of this folder. SUN397 and ImageNet (also the cross-dataset /
# domain-generalization source) train 25 epochs, the others 50, as upstream's train.py does.
TRAINER=TCP
DEFAULT_CFG=vit_b16_ep100_ctxv1
DEFAULT_CFG_IMAGENET=vit_b16_ep25_ctxv1
DATASET_CFGS="sun397=vit_b16_ep25_ctxv1"
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
