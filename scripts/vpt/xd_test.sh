#!/bin/bash
# Cross-dataset / domain generalization, part 2: the source model (ImageNet; synthetic for the synthetic world; or $SOURCE) on DATASET. Usage: xd_test.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_xd_test "$@"
