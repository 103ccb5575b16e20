#!/bin/bash
# Base-to-new, part 2: the base model on the new classes (attribute branch). Usage: base2new_test.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_base2new_test "$@"
