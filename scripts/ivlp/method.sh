#!/bin/bash
# IVLP (independent vision-language deep prompts; the MaPLe paper's 2+2-token, 12-block
# variant by default). Sourced by the scripts of this folder. As upstream's xd scripts,
# ImageNet trains with the base-to-novel config; xd_test.sh loads its last epoch (5).
# Other variants: CFG=vit_b16_c2_ep20_batch4_4+4ctx (the PromptSRC paper's IVLP) or
# CFG=vit_b16_c2_ep5_batch4_4ctx_language_only.
TRAINER=IVLP
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2+2ctx
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
