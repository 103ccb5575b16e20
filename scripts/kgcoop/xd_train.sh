#!/bin/bash
# Cross-dataset, part 1: train on ImageNet (all classes). Usage: xd_train.sh SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_xd_train "$@"
