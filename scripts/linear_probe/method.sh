#!/bin/bash
# Linear probe CLIP (CoOp's lpclip): logistic regression on frozen image features, C searched on val.
# It classifies only the classes it was fit on: few-shot, and the base half of base-to-novel (the
# novel and cross-dataset tests report no accuracy, shown as '-'). Sourced by the scripts of this folder.
TRAINER=LinearProbe
DEFAULT_CFG=vit_b16
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
