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
Every run folder records its resolved config and the fingerprint of the keys that change
its numbers (``dassl/run_record.py``): a folder made with another config is neither
resumed nor skipped as finished; the message names each differing key and the two ways
on (another ``--output-dir``, or ``--restart``, which moves the old run aside).

``import train`` loads no torch (the engine is imported when a run starts): the scripts
ask ``finished_cli`` whether a command's run is finished, once per script call.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import os.path as osp
import sys
import time
from typing import List, Optional, Sequence, Tuple

from dassl import run_record
from dassl.config import get_cfg_default
from dassl.cpu_allocation import allocated_cpus, capped_workers, decide_threads
from dassl.process_tree import die_with_parent_if_asked
from dassl.run_lock import RUN_LOCKED_EXIT_CODE, RunLock, RunLockedError

TRACEBACK_ENV = "SEMPT_TRACEBACK"


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
    parser.add_argument("--restart", action="store_true",
                        help="move the run already in --output-dir aside (renamed, never deleted) and start afresh")
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
    run_record.register_defaults(cfg)  # keys added since a run was recorded count at their defaults
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


def collect_env_info() -> str:
    from dassl.utils import collect_env_info as collect  # torch: imported when a run starts

    return collect()


def run_state(args: argparse.Namespace, cfg) -> run_record.RunState:
    """The state of ``cfg.OUTPUT_DIR`` for this command (``dassl.run_record.run_state``)."""
    return run_record.run_state(cfg.OUTPUT_DIR, cfg, eval_only=args.eval_only)


# Arguments that only say where things are (or how to start): outside the command digest.
_PLACE_ARGS = ("output_dir", "root", "resume", "model_dir", "restart", "config_file", "dataset_config_file")


def command_digest(args: argparse.Namespace) -> str:
    """A hash of what this command line feeds into the config: its arguments (places
    aside), the contents of its config files and the code version. Equal digests mean
    equal configs, which spares building the config (it imports every trainer) in the
    common case; different digests settle nothing (the config is then compared)."""
    files = []
    for path in (args.dataset_config_file, args.config_file):
        try:
            with open(path, "rb") as f:
                files.append(hashlib.sha256(f.read()).hexdigest())
        except (OSError, TypeError):
            files.append(str(path or ""))
    given = {k: v for k, v in sorted(vars(args).items()) if k not in _PLACE_ARGS}
    text = json.dumps({"args": given, "files": files, "code": run_record.code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def command_state(run_dir: str, args: argparse.Namespace, config_of=None) -> run_record.RunState:
    """``run_dir`` judged against this command line: by its digest when the record has the
    same one, else by its config (``config_of(args)``, default :func:`setup_cfg`)."""
    record = run_record.read_record(run_dir) if osp.isdir(run_dir) else None
    if record is not None and record.get("command_digest") == command_digest(args):
        return run_record.run_state(run_dir, keys=record["keys"], eval_only=args.eval_only)
    if record is None:  # nothing to compare: judged by the log alone
        return run_record.run_state(run_dir, eval_only=args.eval_only)
    cfg = (config_of or setup_cfg)(args)
    return run_record.run_state(run_dir, cfg, eval_only=args.eval_only)


def finished_cli(argv: Sequence[str]) -> int:
    """``finished DIR [TRAIN_PY_ARGS...]`` of ``scripts/lib.sh``: exit 0 when ``DIR`` holds the
    finished run (made by the config of the ``train.py`` arguments, when given), 1 when it
    does not, 3 when it holds a run of another config (stale)."""
    if not argv:
        raise SystemExit("usage: finished DIR [TRAIN_PY_ARGS ...]")
    run_dir, command = argv[0], list(argv[1:])
    if command:
        state = command_state(run_dir, build_parser().parse_args(command))
    else:
        state = run_record.run_state(run_dir)
    if state.stale:
        return 3
    return 0 if state.finished else 1


def stale_message(output_dir: str, diffs: Sequence[run_record.Difference]) -> str:
    return (
        f'The run folder "{output_dir}" holds a run made with another config:\n'
        f"{run_record.format_differences(diffs)}\n"
        "It is neither resumed nor counted as finished for this command. Either\n"
        "  - pick another --output-dir for this config, or\n"
        "  - add --restart to move the old run aside (it is renamed, not deleted) and start afresh."
    )


def check_model_dir(args: argparse.Namespace, cfg) -> str:
    """The fingerprint of the model ``--eval-only --model-dir`` loads (\"\" when it has no
    record); an error naming each key that changes the model when it differs."""
    if not (args.eval_only and args.model_dir):
        return ""
    record = run_record.read_record(args.model_dir)
    if record is None:
        return ""
    diffs = run_record.differences(run_record.model_keys(record["keys"]),
                                   run_record.model_keys(run_record.result_keys(cfg)))
    if diffs:
        raise SystemExit(
            f'The model in --model-dir "{args.model_dir}" was trained with other settings of the model:\n'
            f"{run_record.format_differences(diffs)}\n"
            "Evaluate it with the config it was trained with (the same --config-file and KEY VALUE "
            f"overrides; see {osp.join(args.model_dir, run_record.CONFIG_FILE)}), or point --model-dir at "
            "a model trained with these settings."
        )
    return record["fingerprint"]


def use_cpu_allocation(cfg) -> None:
    """Keep torch's threads within the CPUs this process may use, and say it in the log.

    An exported ``OMP_NUM_THREADS`` is torch's own setting; otherwise torch would use every
    core of the node, whatever the SLURM allocation (dassl.cpu_allocation).
    """
    import torch

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
        if args.restart:
            lock = restart_aside(cfg.OUTPUT_DIR, lock)
        run_locked(args, cfg)
    finally:
        lock.release()


def restart_aside(output_dir: str, lock: RunLock) -> RunLock:
    """``--restart``: move the run in ``output_dir`` (if any) aside and lock the fresh folder."""
    if not any(n != ".run.lock" for n in os.listdir(output_dir)):
        return lock
    aside = run_record.aside_path(output_dir)
    os.rename(output_dir, aside)  # the lock file moves too; this process still holds it
    fresh = RunLock(output_dir)
    try:
        fresh.acquire()
    except RunLockedError as err:
        lock.release()
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(RUN_LOCKED_EXIT_CODE) from None
    lock.release()
    print(f'--restart: moved the previous run in "{output_dir}" aside to "{aside}"')
    return fresh


def run_locked(args: argparse.Namespace, cfg) -> None:
    """The run itself, while this process holds the output directory's lock."""
    setup_started = time.perf_counter()
    import torch

    from dassl.engine import build_trainer
    from dassl.engine.cost import write_run_cost
    from dassl.utils import set_random_seed, setup_logger

    state = run_state(args, cfg)
    if state.stale:
        raise SystemExit(stale_message(cfg.OUTPUT_DIR, state.diffs))
    if state.finished:
        raise SystemExit(
            f'Refusing to overwrite the finished run in "{cfg.OUTPUT_DIR}" (see its log.txt). '
            "Pick another --output-dir, or add --restart to move it aside and run again."
        )
    if state.legacy and state.exists:
        print(run_record.LEGACY_WARNING.format(dir=cfg.OUTPUT_DIR, record=run_record.RECORD_FILE))
    model_fingerprint = check_model_dir(args, cfg)
    run_record.write_record(cfg.OUTPUT_DIR, cfg, [sys.executable, *sys.argv], model_fingerprint,
                            args.model_dir if args.eval_only else "", command_digest(args))

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
    """``python train.py``: a user error (a ``ValueError``, ``KeyError``, ``OSError`` or
    ``CheckpointError``) prints its message alone and
    exits 1; ``--traceback`` or ``SEMPT_TRACEBACK=1`` print the traceback instead."""
    args = parse_arguments(build_parser(), argv)
    die_with_parent_if_asked()  # started by the benchmark runner: end with it (dassl.process_tree)
    if args.traceback or os.environ.get(TRACEBACK_ENV) == "1":
        main(args)
        return 0
    from dassl.utils import CheckpointError  # torch: only once a run starts

    # Errors that tell the user what to change (a config, a path, a disk): printed as their
    # message alone. Their traceback still goes to the run's log.txt once it exists.
    user_errors = (ValueError, KeyError, OSError, CheckpointError)
    try:
        main(args)
    except user_errors as err:
        print(f"error: {_message(err)}", file=sys.stderr)
        print(f"({type(err).__name__}; the traceback: rerun with --traceback, or see the run's log.txt)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(console_main(sys.argv[1:]))
