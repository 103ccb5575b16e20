#!/bin/bash
# Shared logic of the benchmark scripts. A method's scripts are thin: they set
#   TRAINER          the registered trainer name (e.g. CoOp)
#   CFG_DIR          folder under configs/trainers/ (default: $TRAINER)
#   DEFAULT_CFG      config name used when CFG is not set
#   DEFAULT_CFG_IMAGENET  (optional) config for ImageNet and the cross-dataset runs
#   DATASET_CFGS     (optional) space-separated DATASET=CONFIG pairs: the config of those
#                    datasets (e.g. upstream TCP trains SUN397 and ImageNet for 25 epochs)
#   EVAL_ONLY=1      (optional) zero-shot methods: every run is --eval-only, no model dir
#   METHOD_OPTS      (optional) array of extra KEY VALUE config pairs
# then source this file and call one of run_base2new_train, run_base2new_test,
# run_xd_train, run_xd_test, run_fewshot with the script's arguments. Arguments after
# the documented ones are passed to train.py as KEY VALUE config overrides.
#
# Environment read here:
#   DATA    folder holding the datasets (required, except for the synthetic world, which
#           defaults to ./data of the repository and is generated there on first use)
#   CFG     config name (default: the dataset's entry in DATASET_CFGS, else the
#           method's synthetic config for the synthetic world, DEFAULT_CFG_IMAGENET for
#           ImageNet, else DEFAULT_CFG)
#   SOURCE  cross-dataset source (default: imagenet; synthetic when the target is synthetic)
#   OUTPUT  output root (default: output)
#   SHOTS   shots of the base-to-new and cross-dataset protocols (default: 16)
#   PYTHON  interpreter (default: python)
#   BACKBONE, PRETRAINED  (optional) MODEL.BACKBONE.NAME / MODEL.BACKBONE.PRETRAINED of every
#           run (e.g. BACKBONE=open_clip:ViT-B-16-SigLIP2 PRETRAINED=webli); a run given another
#           backbone than the config's (here or as KEY VALUE arguments) gets its own folder:
#           the config's folder name is followed by "__<backbone>" (backbone_tag below)
#   SEMPT_PLAN  1: plan mode (used by `python -m tools.benchmark`): print the run instead
#           of running it, as one line `SEMPT_PLAN {json}` with "outdir", "finished" (as
#           tested below), "trainer", "source" (cross-dataset runs: the dataset the model
#           is trained on, else "") and "argv" (the exact train.py command, run from the
#           repository root "cwd"); the trained model a test needs is not required to exist.
#
# A finished run (its log holds the final "=> result" block and its run record the same
# config: `finished` below) is skipped; an unfinished one is run again in the same folder,
# where training resumes from its checkpoint; a folder made with another config is
# refused by train.py, naming the keys that differ.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

OUTPUT="${OUTPUT:-output}"
SHOTS="${SHOTS:-16}"
PYTHON="${PYTHON:-python}"
CFG_DIR="${CFG_DIR:-$TRAINER}"
EVAL_ONLY="${EVAL_ONLY:-0}"
if [[ -z "${METHOD_OPTS+x}" ]]; then METHOD_OPTS=(); fi
BACKBONE_OPTS=()  # from BACKBONE / PRETRAINED, before the script's own KEY VALUE arguments
if [[ -n "${BACKBONE:-}" ]]; then BACKBONE_OPTS+=(MODEL.BACKBONE.NAME "$BACKBONE"); fi
if [[ -n "${PRETRAINED:-}" ]]; then BACKBONE_OPTS+=(MODEL.BACKBONE.PRETRAINED "$PRETRAINED"); fi

die() {
    echo "error: $*" >&2
    exit 1
}

usage_check() {  # usage_check N_REQUIRED "USAGE" ARGS...
    local need=$1 usage=$2
    shift 2
    if (($# < need)); then die "usage: bash $0 $usage [KEY VALUE ...]"; fi
}

require_data() {  # require_data DATASET
    if [[ "${1:-}" == synthetic ]]; then
        # The synthetic world is generated on first use: by default in the main job's ./data.
        DATA="${DATA:-$REPO_ROOT/data}"
        if [[ "${SEMPT_PLAN:-0}" == 1 ]]; then return 0; fi  # plan mode creates nothing
        mkdir -p "$DATA" || die "cannot create DATA=$DATA for the synthetic world; set DATA to a writable folder"
    fi
    [[ -n "${DATA:-}" ]] || die "DATA is not set: export DATA=/path/to/datasets (the folder holding e.g. eurosat/, imagenet/)"
    [[ -d "$DATA" ]] || die "DATA=$DATA is not a directory"
}

dataset_cfg() {  # dataset_cfg DATASET -> its entry in DATASET_CFGS (empty if none)
    local pair
    for pair in ${DATASET_CFGS:-}; do
        if [[ "${pair%%=*}" == "$1" ]]; then
            echo "${pair#*=}"
            return 0
        fi
    done
}

pick_cfg() {  # pick_cfg DATASET -> the config name for this dataset
    if [[ -n "${CFG:-}" ]]; then
        echo "$CFG"
    elif [[ -n "$(dataset_cfg "$1")" ]]; then
        dataset_cfg "$1"
    elif [[ "$1" == "synthetic" ]]; then
        # The built-in world runs with the shipped tiny CLIP: every method has its own config for it.
        [[ -f "configs/trainers/${CFG_DIR}/synthetic.yaml" ]] ||
            die "${TRAINER} has no synthetic config (configs/trainers/${CFG_DIR}/synthetic.yaml), so it cannot run on the synthetic world; write one (configs/trainers/CoOp/synthetic.yaml is an example) or set CFG"
        echo synthetic
    elif [[ "$1" == "imagenet" && -n "${DEFAULT_CFG_IMAGENET:-}" ]]; then
        echo "$DEFAULT_CFG_IMAGENET"
    else
        echo "$DEFAULT_CFG"
    fi
}

config_file() {  # config_file CFG
    local path="configs/trainers/${CFG_DIR}/$1.yaml"
    [[ -f "$path" ]] || die "no config $path; available: $(cd "configs/trainers/${CFG_DIR}" && ls ./*.yaml | sed 's#./##; s/\.yaml$//' | tr '\n' ' ')"
    echo "$path"
}

dataset_file() {  # dataset_file DATASET
    local path="configs/datasets/$1.yaml"
    [[ -f "$path" ]] || die "unknown dataset '$1'; available: $(cd configs/datasets && ls ./*.yaml | sed 's#./##; s/\.yaml$//' | tr '\n' ' ')"
    echo "$path"
}

max_epoch() {  # max_epoch CONFIG_FILE [KEY VALUE ...] -> OPTIM.MAX_EPOCH, the epoch of the last checkpoint
    local config=$1
    shift
    while (($# >= 2)); do  # a command-line override wins, as in train.py
        if [[ "$1" == OPTIM.MAX_EPOCH ]]; then
            echo "$2"
            return 0
        fi
        shift
    done
    "$PYTHON" -c 'import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1])) or {}
print(int((cfg.get("OPTIM") or {}).get("MAX_EPOCH", 10)))  # 10: the engine default' "$config"
}

backbone_tag() {  # backbone_tag [KEY VALUE ...] -> "" or "__<backbone>[-<weights>]", for run folder names
    local name="${BACKBONE:-}" weights="${PRETRAINED:-}"
    while (($# >= 2)); do  # a command-line override wins, as in train.py
        case "$1" in
            MODEL.BACKBONE.NAME) name=$2 ;;
            MODEL.BACKBONE.PRETRAINED) weights=$2 ;;
        esac
        shift
    done
    [[ -n "$name" ]] || return 0
    local prefix=""
    if [[ "$name" == open_clip:* ]]; then prefix=openclip-; name=${name#open_clip:}; fi
    if [[ -e "$name" ]]; then name=$(basename "$name"); name=${name%.*}; fi  # a config or checkpoint file: its name
    name="${prefix}${name}"
    if [[ -n "$weights" && -e "$weights" ]]; then weights=$(basename "$weights"); weights=${weights%.*}; fi
    local tag="${name}${weights:+-$weights}"
    printf '__%s' "${tag//[^A-Za-z0-9._-]/-}"
}

finished() {  # finished DIR [TRAIN_PY_ARGS...]: DIR holds the finished run of this train.py command
    # The one definition (dassl/run_record.py, through train.py's finished_cli): the log holds
    # the final result block and the run's record, if any, has this command's config; a
    # folder of another config is not finished (train.py then names the differing keys).
    "$PYTHON" -c 'import sys, train; sys.exit(train.finished_cli(sys.argv[1:]))' "$@"
}

json_string() {  # json_string TEXT -> TEXT as a JSON string literal
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

plan_record() {  # plan_record OUTDIR ARGV...: the SEMPT_PLAN line of one run
    local outdir=$1 done=false arg argv="" sep=""
    shift
    if finished "$outdir" "${@:3}"; then done=true; fi  # "${@:3}": the arguments after PYTHON train.py
    for arg in "$@"; do
        argv+="${sep}$(json_string "$arg")"
        sep=", "
    done
    printf 'SEMPT_PLAN {"outdir": %s, "finished": %s, "trainer": %s, "source": %s, "cwd": %s, "argv": [%s]}\n' \
        "$(json_string "$outdir")" "$done" "$(json_string "$TRAINER")" "$(json_string "${PLAN_SOURCE:-}")" \
        "$(json_string "$REPO_ROOT")" "$argv"
}

launch() {  # launch OUTDIR TRAIN_PY_ARGS...
    local outdir=$1
    shift
    local eval_args=()
    if [[ "$EVAL_ONLY" == 1 ]]; then eval_args=(--eval-only); fi
    local command=("$PYTHON" train.py --root "$DATA" --output-dir "$outdir" "${eval_args[@]}" "$@")
    if [[ "${SEMPT_PLAN:-0}" == 1 ]]; then
        plan_record "$outdir" "${command[@]}"
        return 0
    fi
    if finished "$outdir" "${command[@]:2}"; then
        echo "The results exist at ${outdir} (finished; skip this job)"
        return 0
    fi
    if [[ -d "$outdir" ]]; then echo "Unfinished run at ${outdir}: running it again"; fi
    "${command[@]}"
}

require_model() {  # require_model DIR HINT
    # In plan mode the model is not there yet: the plan orders the training before this run.
    if [[ "${SEMPT_PLAN:-0}" == 1 ]]; then return 0; fi
    [[ -d "$1" ]] || die "no trained model at $1; run $2 first"
}

run_base2new_train() {  # DATASET SEED [KEY VALUE ...]
    usage_check 2 "DATASET SEED" "$@"
    local dataset=$1 seed=$2
    shift 2
    require_data "$dataset"
    local cfg config data_config
    cfg=$(pick_cfg "$dataset")
    config=$(config_file "$cfg")
    data_config=$(dataset_file "$dataset")
    launch "${OUTPUT}/base2new/train_base/${dataset}/shots_${SHOTS}/${TRAINER}/${cfg}$(backbone_tag "$@")/seed${seed}" \
        --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$data_config" --config-file "$config" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base "${METHOD_OPTS[@]}" "${BACKBONE_OPTS[@]}" "$@"
}

run_base2new_test() {  # DATASET SEED [KEY VALUE ...]
    usage_check 2 "DATASET SEED" "$@"
    local dataset=$1 seed=$2
    shift 2
    require_data "$dataset"
    local cfg config data_config common epoch
    cfg=$(pick_cfg "$dataset")
    config=$(config_file "$cfg")
    data_config=$(dataset_file "$dataset")
    epoch=$(max_epoch "$config" "$@")
    common="${dataset}/shots_${SHOTS}/${TRAINER}/${cfg}$(backbone_tag "$@")/seed${seed}"
    local model_args=()
    if [[ "$EVAL_ONLY" != 1 ]]; then
        require_model "${OUTPUT}/base2new/train_base/${common}" "base2new_train.sh ${dataset} ${seed}"
        model_args=(--model-dir "${OUTPUT}/base2new/train_base/${common}" --load-epoch "$epoch" --eval-only)
    fi
    launch "${OUTPUT}/base2new/test_new/${common}" \
        --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$data_config" --config-file "$config" "${model_args[@]}" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES new "${METHOD_OPTS[@]}" "${BACKBONE_OPTS[@]}" "$@"
}

xd_source() {  # xd_source TARGET -> the dataset the cross-dataset model is trained on
    if [[ -n "${SOURCE:-}" ]]; then
        echo "$SOURCE"
    elif [[ "$1" == "synthetic" ]]; then
        echo synthetic
    else
        echo imagenet
    fi
}

xd_model_dir() {  # xd_model_dir SOURCE CFG SEED -> where xd_train.sh writes the source model
    echo "${OUTPUT}/$1/${TRAINER}/$2_${SHOTS}shots/seed$3"
}

run_xd_train() {  # [SOURCE] SEED [KEY VALUE ...]: all classes of SOURCE (default: imagenet)
    usage_check 1 "[SOURCE] SEED" "$@"
    local source
    source=$(xd_source "")
    if (($# >= 2)) && [[ ! "$1" =~ ^[0-9]+$ ]]; then  # upstream MaPLe's form: xd_train.sh imagenet SEED
        source=$1
        shift
    fi
    local seed=$1
    shift
    require_data "$source"
    local cfg config data_config
    cfg=$(pick_cfg "$source")
    config=$(config_file "$cfg")
    data_config=$(dataset_file "$source")
    PLAN_SOURCE=$source
    launch "$(xd_model_dir "$source" "$cfg$(backbone_tag "$@")" "$seed")" \
        --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$data_config" --config-file "$config" \
        DATASET.NUM_SHOTS "$SHOTS" "${METHOD_OPTS[@]}" "${BACKBONE_OPTS[@]}" "$@"
}

run_xd_test() {  # DATASET SEED [KEY VALUE ...]: the source model (see xd_source) on another dataset
    usage_check 2 "DATASET SEED" "$@"
    local dataset=$1 seed=$2
    shift 2
    require_data "$dataset"
    local source cfg config data_config epoch tag=""
    source=$(xd_source "$dataset")
    cfg=$(pick_cfg "$source")
    config=$(config_file "$cfg")
    data_config=$(dataset_file "$dataset")
    epoch=$(max_epoch "$config" "$@")
    if [[ "$source" != imagenet ]]; then tag="_from_${source}"; fi
    PLAN_SOURCE=$source
    local model_args=()
    if [[ "$EVAL_ONLY" != 1 ]]; then
        local model_dir
        model_dir=$(xd_model_dir "$source" "$cfg$(backbone_tag "$@")" "$seed")
        require_model "$model_dir" "xd_train.sh ${source} ${seed}"
        model_args=(--model-dir "$model_dir" --load-epoch "$epoch" --eval-only)
    fi
    launch "${OUTPUT}/evaluation/${TRAINER}/${cfg}$(backbone_tag "$@")_${SHOTS}shots${tag}/${dataset}/seed${seed}" \
        --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$data_config" --config-file "$config" "${model_args[@]}" \
        "${METHOD_OPTS[@]}" "${BACKBONE_OPTS[@]}" "$@"
}

run_fewshot() {  # DATASET SHOTS SEED [KEY VALUE ...]: all classes; FEWSHOT_TAG names variants
    usage_check 3 "DATASET SHOTS SEED" "$@"
    local dataset=$1 shots=$2 seed=$3
    shift 3
    require_data "$dataset"
    local cfg config data_config
    cfg=$(pick_cfg "$dataset")
    config=$(config_file "$cfg")
    data_config=$(dataset_file "$dataset")
    launch "${OUTPUT}/fewshot/${dataset}/shots_${shots}/${TRAINER}/${cfg}${FEWSHOT_TAG:-}$(backbone_tag "$@")/seed${seed}" \
        --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$data_config" --config-file "$config" \
        DATASET.NUM_SHOTS "$shots" "${METHOD_OPTS[@]}" "${BACKBONE_OPTS[@]}" "$@"
}
