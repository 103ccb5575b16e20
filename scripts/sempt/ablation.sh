#!/bin/bash
# SemPT ablations on the base-to-new protocol: every switch of the README's ablation table, each
# in its own output folder $OUTPUT/ablation/<variant>/base2new/..., base and new.
# Usage: ablation.sh DATASET SEED [VARIANT ...]   (default: all variants)
# Summarise with: python parse_test_res.py --base2new output/ablation/<variant>/base2new
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if (($# < 2)); then echo "usage: bash $0 DATASET SEED [VARIANT ...]" >&2; exit 1; fi
dataset=$1 seed=$2
shift 2

declare -A VARIANTS=(
    [default]=""
    [label_only]="TRAINER.SEMPT.ATTR_LOSS_WEIGHT 0.0 TRAINER.SEMPT.INFERENCE label"
    [uniform_weighting]="TRAINER.SEMPT.WEIGHTING uniform"
    [attribute_only]="TRAINER.SEMPT.FUSION attribute_only"
    [inference_label]="TRAINER.SEMPT.INFERENCE label"
    [inference_attribute]="TRAINER.SEMPT.INFERENCE attribute"
    [inference_ensemble]="TRAINER.SEMPT.INFERENCE ensemble"
    [prompted_descriptions]="TRAINER.SEMPT.DESC_ENCODER prompted"
    [kg_on]="TRAINER.SEMPT.KG_WEIGHT 8.0"
)
ORDER=(default label_only uniform_weighting attribute_only inference_label inference_attribute
       inference_ensemble prompted_descriptions kg_on)
selected=("$@")
if ((${#selected[@]} == 0)); then selected=("${ORDER[@]}"); fi

root="${OUTPUT:-output}"
for variant in "${selected[@]}"; do
    if [[ -z "${VARIANTS[$variant]+x}" ]]; then
        echo "unknown variant '$variant'; choose from: ${ORDER[*]}" >&2
        exit 1
    fi
    # shellcheck disable=SC2206  # the overrides are KEY VALUE words
    opts=(${VARIANTS[$variant]})
    echo "=== SemPT ablation '${variant}' on ${dataset}, seed ${seed}: ${VARIANTS[$variant]:-defaults}"
    OUTPUT="${root}/ablation/${variant}" bash "$here/base2new_train.sh" "$dataset" "$seed" "${opts[@]}"
    OUTPUT="${root}/ablation/${variant}" bash "$here/base2new_test.sh" "$dataset" "$seed" "${opts[@]}"
done
