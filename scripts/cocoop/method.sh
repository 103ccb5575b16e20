#!/bin/bash
# CoCoOp (batch 1, 10 epochs). Sourced by the scripts of this folder.
TRAINER=CoCoOp
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
