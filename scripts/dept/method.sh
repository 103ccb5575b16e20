#!/bin/bash
# DePT on CoOp (16 random context tokens, a channel-wise transformation head at 6.5x the
# learning rate, fused with CoOp's logits on the trained classes). Sourced by the scripts of
# this folder. As upstream, every dataset (ImageNet included) uses the one config.
TRAINER=DePT
DEFAULT_CFG=vit_b16_ep10_bs4_lr35
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
