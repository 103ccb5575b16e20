#!/bin/bash
# KgCoOp (W = 8.0 in the config; override with TRAINER.KGCOOP.W). Sourced by the scripts of this folder.
TRAINER=KgCoOp
DEFAULT_CFG=vit_b16_ep100_ctxv1
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
