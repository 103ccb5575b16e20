#!/bin/bash
# ProGrad. Sourced by the scripts of this folder.
# Base-to-novel and cross-dataset: upstream's recipe on ViT-B/16 with the 16 shots of the
# protocol its quoted ViT-B/16 numbers come from (vit_b16_ep100; ImageNet vit_b16_ep50).
# Upstream's own RN50 runs used 4 shots: with CFG=rn50_ep100 (ImageNet: CFG=rn50_ep50) and
# no SHOTS, SHOTS is 4 as in its base2new_*_prograd.sh and eval.sh.
# Few-shot: upstream's RN50 config for the shot count and its lambda per dataset
# (prograd_fewshot_setup below, called by fewshot.sh).
TRAINER=ProGrad
DEFAULT_CFG=vit_b16_ep100
DEFAULT_CFG_IMAGENET=vit_b16_ep50
if [[ -z "${SHOTS:-}" && "${CFG:-}" == rn50* ]]; then SHOTS=4; fi
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

prograd_fewshot_setup() {  # DATASET SHOTS ...: sets CFG (unless given) and lambda as upstream's README
    local dataset=${1:-} shots=${2:-}
    [[ "$shots" =~ ^[0-9]+$ ]] || return 0  # run_fewshot reports the usage
    if [[ -z "${CFG:-}" && "$dataset" != synthetic ]]; then
        if [[ "$dataset" == imagenet || "$shots" -le 1 ]]; then
            CFG=rn50_ep50  # ImageNet: 50 epochs at every shot count, as CoOp
        elif ((shots <= 4)); then
            CFG=rn50_ep100
        else
            CFG=rn50
        fi
    fi
    # "The 8-shots and 16-shots results on Flowers102, DTD, and EuroSAT are gotten with lambda as 0.8."
    if ((shots >= 8)) && [[ " oxford_flowers dtd eurosat " == *" $dataset "* ]]; then
        METHOD_OPTS+=(TRAINER.PROGRAD.LAMBDA 0.8)
    fi
}
