#!/bin/bash
# Base-to-new, part 2: evaluate the base-trained model on the new classes. Usage: base2new_test.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_base2new_test "$@"
