#!/bin/bash
# Cross-dataset / domain generalization, part 2: the ImageNet model on DATASET (e.g. caltech101, imagenet_sketch). Usage: xd_test.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/method.sh"
run_xd_test "$@"
