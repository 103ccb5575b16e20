#!/bin/bash
# Base-to-new, part 2: the new classes. A linear probe has no weights for them: the run says so and its result
# block has no accuracy (tables show '-'); kept so every method has the same scripts. Usage: base2new_test.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_base2new_test "$@"
