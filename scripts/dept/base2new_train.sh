#!/bin/bash
# Base-to-new, part 1: train on the base classes, test on them. Usage: base2new_train.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_base2new_train "$@"
