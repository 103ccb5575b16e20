"""Train or evaluate a prompt learner: upstream CoOp's ``train.py``, with fixes
(docs/upstream-differences.md).

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/caltech101.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ctxv1.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16

Differences from upstream: ``--seed 0`` is honoured; an output directory whose run
has finished is refused (pick another one), and a partial one is resumed; a run holds
its output directory's lock (``dassl.run_lock``) for its whole life, so a second run on
the same directory stops at once with exit code 75 instead of clobbering the first.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time
from typing import Optional, Sequence

import torch

from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.engine.cost import write_run_cost
from dassl.run_lock import RUN_LOCKED_EXIT_CODE, RunLock, RunLockedError
from dassl.utils import collect_env_info, set_random_seed, setup_logger

END_SIGNALS = ("Finish training", "Finished training")
RESULT_SIGNAL = "=> result"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1, help="only non-negative values fix the seed (0 included)")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line"
    )
    return parser


def reset_cfg(cfg, args: argparse.Namespace) -> None:
    """Copy the CLI arguments that were given into ``cfg`` (as upstream, but seed 0 counts)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:  # upstream tested `if args.seed:` and lost seed 0
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def extend_cfg(cfg) -> None:
    """Add the trainers' config nodes (``trainers.config``)."""
    from trainers.config import extend_cfg as _extend

    _extend(cfg)


def setup_cfg(args: argparse.Namespace):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    reset_cfg(cfg, args)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    return cfg


def print_args(args: argparse.Namespace, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def finished_run(output_dir: str, eval_only: bool, tests: bool = True) -> Optional[str]:
    """The path of ``output_dir``'s log if it records a finished run, else None.

    A run is finished once it printed its result block (``=> result``), as the scripts
    (``finished`` in ``scripts/lib.sh``) and the benchmark runner judge it: a training run
    stopped between the end of training and the end of its final test is not finished,
    and running it again resumes it (the epochs are done, the test runs). A training run
    that does not test (``tests=False``: ``TEST.NO_TEST``) is finished at the end of training.
    """
    log = osp.join(output_dir, "log.txt")
    if not osp.isfile(log):
        return None
    signals = (RESULT_SIGNAL,) if eval_only or tests else END_SIGNALS
    with open(log, errors="replace") as f:
        if any(line.strip() in signals for line in f):
            return log
    return None


def register_components() -> None:
    """Import the dataset readers and trainers so that they register themselves."""
    import datasets  # noqa: F401  (importing the package registers every reader)
    import trainers

    trainers.register_all()


def prepare_dataset(cfg) -> None:
    """Generate the built-in synthetic world on first use (its reader only reads it).

    Every other dataset is downloaded by the user (DATASETS.md). The generator checks an
    existing folder's world version and is safe when several runs start at once.
    """
    from datasets.synthetic import Synthetic

    if cfg.DATASET.NAME == Synthetic.__name__:
        from tools.synthetic.generate import ensure_world

        ensure_world(cfg.DATASET.ROOT)


def main(args: argparse.Namespace) -> None:
    register_components()
    cfg = setup_cfg(args)

    # Taken before anything reads or writes the folder (the finished check, the log).
    lock = RunLock(cfg.OUTPUT_DIR)
    try:
        lock.acquire()
    except RunLockedError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(RUN_LOCKED_EXIT_CODE) from None
    try:
        run_locked(args, cfg)
    finally:
        lock.release()


def run_locked(args: argparse.Namespace, cfg) -> None:
    """The run itself, while this process holds the output directory's lock."""
    setup_started = time.perf_counter()
    done = finished_run(cfg.OUTPUT_DIR, args.eval_only, tests=not cfg.TEST.NO_TEST)
    if done:
        raise SystemExit(
            f'Refusing to overwrite the finished run in "{cfg.OUTPUT_DIR}" (see {done}). '
            "Pick another --output-dir, or delete that directory to run again."
        )

    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)

    logger = setup_logger(cfg.OUTPUT_DIR)
    try:
        if torch.cuda.is_available() and cfg.USE_CUDA:
            torch.backends.cudnn.benchmark = True
        print_args(args, cfg)
        print("Collecting env info ...")
        print(f"** System info **\n{collect_env_info()}\n")

        prepare_dataset(cfg)
        trainer = build_trainer(cfg)
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.cost.add_seconds("setup", time.perf_counter() - setup_started)
        if args.eval_only:
            trainer.test()
        elif not args.no_train:
            trainer.train()
        write_run_cost(trainer, cfg.OUTPUT_DIR)
    except BaseException as exc:
        if logger is not None:
            logger.log_exception(exc)
        raise
    finally:
        if logger is not None:
            logger.close()


def cli(argv: Optional[Sequence[str]] = None) -> None:
    main(build_parser().parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
