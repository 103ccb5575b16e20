#!/bin/bash
# Cross-dataset / domain generalisation, part 2: evaluate the ImageNet model on DATASET. Usage: xd_test.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_xd_test "$@"
