#!/bin/bash
# PromptSRC. Sourced by the scripts of this folder. Base-to-novel: the 20-epoch config;
# ImageNet, the cross-dataset / domain generalization source: the cross-dataset config
# (upstream's xd scripts name an "ep5" file that does not exist); few-shot: the 50-epoch
# config with the paper's GPA for each dataset (upstream edits the YAML by hand).
TRAINER=PromptSRC
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx
DEFAULT_CFG_IMAGENET=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
FEWSHOT_CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

fewshot_gpa() {  # fewshot_gpa DATASET -> "GPA_MEAN GPA_STD" of the PromptSRC paper, or nothing
    case "$1" in
        imagenet | caltech101 | oxford_pets | food101 | ucf101 | sun397) echo "30 30" ;;
        stanford_cars | oxford_flowers | fgvc_aircraft | dtd | eurosat) echo "45 5" ;;
    esac
}

run_promptsrc_fewshot() {  # DATASET SHOTS SEED [KEY VALUE ...]
    DEFAULT_CFG=$FEWSHOT_CFG
    DEFAULT_CFG_IMAGENET=$FEWSHOT_CFG  # ImageNet few-shot uses the few-shot config too
    local gpa
    gpa=$(fewshot_gpa "${1:-}")
    # Only the few-shot config gets the per-dataset pair (another CFG keeps its own values);
    # KEY VALUE arguments given to the script come after these, so they still win.
    if [[ -n "$gpa" && "$(pick_cfg "$1")" == "$FEWSHOT_CFG" ]]; then
        read -r mean std <<<"$gpa"
        METHOD_OPTS+=(TRAINER.PROMPTSRC.GPA_MEAN "$mean" TRAINER.PROMPTSRC.GPA_STD "$std")
    fi
    run_fewshot "$@"
}
