#!/bin/bash
# Cross-dataset / domain generalization, part 1: train on all classes of the source (ImageNet; the synthetic world: xd_train.sh synthetic SEED). Usage: xd_train.sh [SOURCE] SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_xd_train "$@"
