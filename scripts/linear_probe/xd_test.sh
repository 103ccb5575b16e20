#!/bin/bash
# Cross-dataset, part 2: the source model on DATASET. A linear probe classifies only the classes it was fit on:
# on other classes it reports no accuracy (tables show '-'). Usage: xd_test.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_xd_test "$@"
