"""Utilities: files/JSON/images, seeding, logging, checkpoints, meters, registry."""
from .logger import Logger, setup_logger
from .meters import AverageMeter, MetricMeter
from .registry import Registry, check_availability
from .tools import (
    check_isfile,
    collect_env_info,
    get_rng_state,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    set_rng_state,
    write_json,
)
from .torchtools import (
    CheckpointError,
    count_num_param,
    load_checkpoint,
    load_pretrained_weights,
    read_model_checkpoint,
    save_checkpoint,
)

__all__ = [
    "Logger",
    "setup_logger",
    "AverageMeter",
    "MetricMeter",
    "Registry",
    "check_availability",
    "check_isfile",
    "collect_env_info",
    "get_rng_state",
    "listdir_nohidden",
    "mkdir_if_missing",
    "read_image",
    "read_json",
    "set_random_seed",
    "set_rng_state",
    "write_json",
    "count_num_param",
    "CheckpointError",
    "load_checkpoint",
    "read_model_checkpoint",
    "load_pretrained_weights",
    "save_checkpoint",
]
