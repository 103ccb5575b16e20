"""Choose SemPT's [our reading] defaults without looking at a novel class or a test image.

The base classes of a dataset are split again into pseudo-base and pseudo-novel halves
(``DATASET.SUBSAMPLE_CLASSES pseudo_base`` / ``pseudo_new``). Each candidate setting is
trained on pseudo-base (16 shots) and scored by the harmonic mean of its accuracy on the
*validation* images of both halves (the whole val split: ``DATASET.VAL_FEWSHOT False``),
averaged over seeds. The novel classes and the test split are never read.

The search is coordinate-wise, as is usual for a handful of keys: every value of every key
with the others at their defaults (stage 1), then the best value of each key together
(stage 2); the setting with the best validation HM wins. Settings that differ only in
``INFERENCE`` share their training runs.

    python -m tools.sempt_sweep --dataset synthetic --seeds 1 2 --slots 2
    python -m tools.sempt_sweep --dataset synthetic --stage1-only --markdown sweep.md

Runs go to ``--output`` (default ``output/sempt_sweep/<dataset>``); finished runs are reused,
so an interrupted sweep continues where it stopped.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import train  # noqa: E402  (no torch: its command line and the finished check)
from tools.results import TEST_SIGNALS, parse_log  # noqa: E402

#: The keys searched, their values (the first is the current default) and, for keys that
#: need another config file (the label branches), that config's name per value.
SEARCH_SPACE: Dict[str, List[str]] = {
    "WEIGHT_TEMP": ["0.0", "0.02", "0.05", "0.1"],
    "FUSION_WEIGHT": ["1.0", "0.5", "2.0"],
    "ATTR_LOSS_WEIGHT": ["1.0", "0.5", "2.0"],
    "FUSION": ["add", "attribute_only"],
    "WEIGHTING": ["visual", "uniform"],
    "KG_WEIGHT": ["0.0", "8.0"],
    "INFERENCE": ["auto", "ensemble"],
    "LABEL_BRANCH": ["coop", "maple", "promptsrc"],
}
#: Keys that act at evaluation only: their settings reuse the training runs.
EVAL_ONLY_KEYS = ("INFERENCE",)
#: The SemPT config of a label branch on a dataset: ``<base>`` for coop, ``<base>_<branch>`` else.
BRANCH_KEY = "LABEL_BRANCH"


@dataclass(frozen=True)
class Setting:
    """Values of the searched keys that differ from the defaults."""

    changes: Tuple[Tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.changes) or "defaults"

    def value(self, key: str) -> str:
        return dict(self.changes).get(key, SEARCH_SPACE[key][0])

    def training(self) -> "Setting":
        """The setting whose training run this one uses (eval-only keys dropped)."""
        return Setting(tuple((k, v) for k, v in self.changes if k not in EVAL_ONLY_KEYS))

    def slug(self) -> str:
        text = "_".join(f"{k.lower()}-{v}" for k, v in self.changes) or "defaults"
        return re.sub(r"[^A-Za-z0-9_.-]", "", text)


@dataclass
class Score:
    setting: Setting
    base: List[float] = field(default_factory=list)
    new: List[float] = field(default_factory=list)

    @property
    def hm(self) -> Optional[float]:
        if not self.base or not self.new:
            return None
        b, n = float(np.mean(self.base)), float(np.mean(self.new))
        return 2 * b * n / (b + n) if b + n else 0.0


def stage1() -> List[Setting]:
    settings = [Setting()]
    for key, values in SEARCH_SPACE.items():
        settings += [Setting(((key, v),)) for v in values[1:]]
    return settings


def stage2(scores: Sequence[Score]) -> Optional[Setting]:
    """Each key at its best stage-1 value, if that differs from the default in more than one key."""
    best: Dict[str, Tuple[float, str]] = {}
    for score in scores:
        if score.hm is None or len(score.setting.changes) > 1:
            continue
        for key, value in score.setting.changes or [(k, SEARCH_SPACE[k][0]) for k in SEARCH_SPACE]:
            if key not in best or score.hm > best[key][0]:
                best[key] = (score.hm, value)
    changes = tuple((k, v) for k, (_, v) in best.items() if v != SEARCH_SPACE[k][0])
    return Setting(changes) if len(changes) > 1 else None


def config_for(setting: Setting, dataset: str) -> Path:
    base = "synthetic" if dataset == "synthetic" else "vit_b16_ep100_ctxv1"
    branch = setting.value(BRANCH_KEY)
    name = base if branch == "coop" else f"{base}_{branch}" if dataset == "synthetic" else {
        "maple": "vit_b16_c2_ep5_batch4_2ctx_maple", "promptsrc": "vit_b16_c2_ep20_batch4_4+4ctx_promptsrc"}[branch]
    path = REPO / "configs" / "trainers" / "SemPT" / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"no SemPT config {path} for LABEL_BRANCH {branch} on {dataset}")
    return path


def max_epoch(config: Path) -> int:
    import yaml

    return int((yaml.safe_load(config.read_text()).get("OPTIM") or {}).get("MAX_EPOCH", 10))


def final_accuracy(log: Path) -> Optional[float]:
    """The accuracy of the run's final result block (``tools.results``), or None."""
    if not log.is_file():
        return None
    return parse_log(str(log), "accuracy", TEST_SIGNALS)


def run(argv: List[str], out: Path, threads: int) -> None:
    """One train.py run into ``out`` (skipped when finished, as ``dassl/run_record.py``
    defines it: a folder of another config is not, and train.py then names the keys that
    differ). ``argv`` ends with config overrides (KEY VALUE ...), which take every argument
    after them, so the output folder goes first."""
    command = ["--output-dir", str(out), *argv]
    if train.finished_cli([str(out), *command]) == 0:
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "console.txt", "w") as console:
        result = subprocess.run([sys.executable, "train.py", *command], cwd=REPO, env=env,
                                stdout=console, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"run failed (exit {result.returncode}); see {out / 'console.txt'}")


class Sweep:
    """The runs of a sweep: one training per (training setting, seed), evaluations on top."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.output)
        self.threads = max(1, (os.cpu_count() or 1) // args.slots)

    def _common(self, setting: Setting, seed: int, *flags: str) -> List[str]:
        """train.py's flags (``flags`` added), then the overrides every run of the sweep shares."""
        return ["--root", self.args.data, "--seed", str(seed), "--trainer", "SemPT",
                "--dataset-config-file", str(REPO / "configs" / "datasets" / f"{self.args.dataset}.yaml"),
                "--config-file", str(config_for(setting, self.args.dataset)), *flags,
                "DATASET.NUM_SHOTS", str(self.args.shots), "DATASET.VAL_FEWSHOT", "False", "TEST.SPLIT", "val"]

    @staticmethod
    def _overrides(setting: Setting, keys) -> List[str]:
        return [x for key in keys if key != BRANCH_KEY for x in (f"TRAINER.SEMPT.{key}", setting.value(key))]

    def train_dir(self, setting: Setting, seed: int) -> Path:
        return self.root / "train" / setting.training().slug() / f"seed{seed}"

    def train(self, setting: Setting, seed: int) -> None:
        """Train on pseudo-base; its final test is the pseudo-base validation accuracy."""
        keys = [k for k in SEARCH_SPACE if k not in EVAL_ONLY_KEYS]
        run(self._common(setting, seed) + ["DATASET.SUBSAMPLE_CLASSES", "pseudo_base"]
            + self._overrides(setting, keys), self.train_dir(setting, seed), self.threads)

    def evaluate(self, setting: Setting, seed: int) -> Tuple[float, float]:
        """(pseudo-base, pseudo-novel) validation accuracy of one setting and seed."""
        model = ["--eval-only", "--model-dir", str(self.train_dir(setting, seed)),
                 "--load-epoch", str(max_epoch(config_for(setting, self.args.dataset)))]
        overrides = self._overrides(setting, SEARCH_SPACE)

        def on(half: str) -> float:
            out = self.root / f"eval_{half}" / setting.slug() / f"seed{seed}"
            run(self._common(setting, seed, *model) + ["DATASET.SUBSAMPLE_CLASSES", half] + overrides, out,
                self.threads)
            return final_accuracy(out / "log.txt")

        # The training run already tested pseudo-base, unless an eval-only key changed.
        seen = final_accuracy(self.train_dir(setting, seed) / "log.txt") if setting.training() == setting else on(
            "pseudo_base")
        return seen, on("pseudo_new")


def score_all(settings: Sequence[Setting], args: argparse.Namespace) -> List[Score]:
    sweep = Sweep(args)
    trainings = sorted({(s.training(), seed) for s in settings for seed in args.seeds}, key=lambda j: (j[0].name, j[1]))
    evaluations = [(s, seed) for s in settings for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.slots) as pool:
        list(pool.map(lambda job: sweep.train(*job), trainings))  # every training once, before any evaluation
        results = list(pool.map(lambda job: sweep.evaluate(*job), evaluations))
    scores = {s: Score(s) for s in settings}
    for (setting, _), (base, new) in zip(evaluations, results):
        scores[setting].base.append(base)
        scores[setting].new.append(new)
    return list(scores.values())


def table(scores: Sequence[Score]) -> Tuple[List[str], List[List[str]]]:
    ranked = sorted(scores, key=lambda s: -(s.hm or -1))
    rows = [[s.setting.name, f"{np.mean(s.base):.2f} ± {np.std(s.base):.2f}",
             f"{np.mean(s.new):.2f} ± {np.std(s.new):.2f}", f"{s.hm:.2f}", len(s.base)] for s in ranked]
    return ["setting (changes from the defaults)", "pseudo-base val", "pseudo-novel val", "HM", "seeds"], rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic", help="config name (configs/datasets/<name>.yaml)")
    parser.add_argument("--data", default=os.environ.get("DATA", "data"), help="dataset root (default: $DATA)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--slots", type=int, default=min(2, os.cpu_count() or 1), help="runs at once")
    parser.add_argument("--output", default="", help="default: output/sempt_sweep/<dataset>")
    parser.add_argument("--stage1-only", action="store_true", help="one key at a time only")
    parser.add_argument("--markdown", default="", help="also write the table here")
    parser.add_argument("--csv", default="", help="also write the table here")
    args = parser.parse_args(argv)
    args.data = str(Path(args.data).resolve())
    args.output = str(Path(args.output or REPO / "output" / "sempt_sweep" / args.dataset).resolve())
    if args.dataset == "synthetic":
        from tools.synthetic.generate import ensure_world

        ensure_world(args.data)

    scores = score_all(stage1(), args)
    combined = None if args.stage1_only else stage2(scores)
    if combined is not None:
        scores += score_all([combined], args)
    headers, rows = table(scores)
    best = max(scores, key=lambda s: s.hm or -1)
    print(f"SemPT sweep on {args.dataset}: train on pseudo-base, validation HM of pseudo-base / pseudo-novel, "
          f"seeds {args.seeds}")
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    print(f"\nChosen: {best.setting.name} (validation HM {best.hm:.2f})")
    if args.markdown:
        Path(args.markdown).write_text(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
                                       + f"\n\nChosen: {best.setting.name} (validation HM {best.hm:.2f})\n")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            csv.writer(f).writerows([headers, *rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
