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
import os
import os.path as osp
import sys
import time
from typing import List, Optional, Sequence, Tuple

import torch

from dassl.config import get_cfg_default
from dassl.cpu_allocation import allocated_cpus, capped_workers, decide_threads
from dassl.engine import build_trainer
from dassl.engine.cost import write_run_cost
from dassl.process_tree import die_with_parent_if_asked
from dassl.run_lock import RUN_LOCKED_EXIT_CODE, RunLock, RunLockedError
from dassl.utils import CheckpointError, collect_env_info, set_random_seed, setup_logger

END_SIGNALS = ("Finish training", "Finished training")
RESULT_SIGNAL = "=> result"
TRACEBACK_ENV = "SEMPT_TRACEBACK"
#: Errors that tell the user what to change (a config, a path, a disk): printed as their
#: message alone. Their traceback still goes to the run's log.txt once it exists.
USER_ERRORS = (ValueError, KeyError, OSError, CheckpointError)


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
    parser.add_argument("--traceback", action="store_true",
                        help=f"on an error, print the full traceback, not only its message (also: {TRACEBACK_ENV}=1)")
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line"
    )
    return parser


def _split_trailing_flags(parser: argparse.ArgumentParser, opts: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``opts`` (everything after the first KEY) into the KEY VALUE pairs and the flags among them.

    Only a token standing where a KEY would is taken for a flag, so a value may start with ``--``.
    """
    actions = parser._option_string_actions  # argparse keeps its flags there (private, unchanged since 2.7)
    pairs: List[str] = []
    flags: List[str] = []
    i = 0
    while i < len(opts):
        token = opts[i]
        if not token.startswith("--"):
            pairs.extend(opts[i:i + 2])
            i += 2
            continue
        name = token.split("=", 1)[0]
        if name not in actions:
            parser.error(f"unknown flag {token!r} among the KEY VALUE config overrides (see --help for the flags)")
        action = actions[name]
        flags.append(token)
        i += 1
        if "=" in token or action.nargs == 0:
            continue
        if action.nargs is None:  # one value
            flags.extend(opts[i:i + 1])
            i += 1
            continue
        while i < len(opts) and not opts[i].startswith("--") and "." not in opts[i]:  # nargs="+": up to a KEY
            flags.append(opts[i])
            i += 1
    return pairs, flags


def parse_arguments(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """``parser.parse_args``, also accepting flags written after the KEY VALUE pairs
    (``... OPTIM.LR 0.1 --load-epoch 5``)."""
    args = parser.parse_args(argv)
    pairs, flags = _split_trailing_flags(parser, args.opts or [])
    if flags:
        parser.parse_args(flags, namespace=args)
    args.opts = pairs
    return args


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


def use_cpu_allocation(cfg) -> None:
    """Keep torch's threads within the CPUs this process may use, and say it in the log.

    An exported ``OMP_NUM_THREADS`` is torch's own setting; otherwise torch would use every
    core of the node, whatever the SLURM allocation (dassl.cpu_allocation).
    """
    threads = decide_threads()
    if threads.count < torch.get_num_threads():
        torch.set_num_threads(threads.count)
    allocation = allocated_cpus()
    requested = cfg.DATALOADER.NUM_WORKERS
    workers = capped_workers(requested)
    capped = f" (DATALOADER.NUM_WORKERS {requested}, capped)" if workers != requested else ""
    print(f"CPU: {torch.get_num_threads()} thread(s) (from {threads.source}); data-loader workers: {workers}{capped}; "
          f"CPUs allocated: {allocation.describe()}")


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
        use_cpu_allocation(cfg)
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
    main(parse_arguments(build_parser(), argv))


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]  # str(KeyError) would quote it
    return str(err) or type(err).__name__


def console_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python train.py``: a user error (:data:`USER_ERRORS`) prints its message alone and
    exits 1; ``--traceback`` or ``SEMPT_TRACEBACK=1`` print the traceback instead."""
    args = parse_arguments(build_parser(), argv)
    die_with_parent_if_asked()  # started by the benchmark runner: end with it (dassl.process_tree)
    if args.traceback or os.environ.get(TRACEBACK_ENV) == "1":
        main(args)
        return 0
    try:
        main(args)
    except USER_ERRORS as err:
        print(f"error: {_message(err)}", file=sys.stderr)
        print(f"({type(err).__name__}; the traceback: rerun with --traceback, or see the run's log.txt)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(console_main(sys.argv[1:]))
