#!/bin/bash
# CoOp: base-to-new with 4 context tokens from "a photo of a" (CoCoOp paper protocol). Sourced by the scripts of this folder.
TRAINER=CoOp
DEFAULT_CFG=vit_b16_ctxv1
DEFAULT_CFG_IMAGENET=vit_b16_ep50_ctxv1
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
