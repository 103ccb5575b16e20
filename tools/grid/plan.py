"""The grid as runs, as the scripts themselves define them.

Every run is one script invocation (``bash scripts/<method>/<script>.sh ARGS``). Its
output folder and exact ``train.py`` command come from the script in plan mode
(``SEMPT_PLAN=1``, see ``scripts/lib.sh``), never from logic copied here, so a run
finished by a script is a finished run here and the other way round. Dependencies
follow from the commands: a run that loads ``--model-dir D`` needs the run whose output
folder is ``D``. Cross-dataset evaluations name the dataset their model is trained on
(``source``), which is how the ImageNet (or synthetic) training of each seed is planned.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .grid import Grid, backbone_opts
from .methods import REPO, SCRIPTS, Method, discover_methods, select_methods

PLAN_PREFIX = "SEMPT_PLAN "
_DEFAULTED_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*):-")


@functools.lru_cache(maxsize=None)  # read once per process: every script call of a plan needs it
def script_variables(scripts_dir: Path = SCRIPTS) -> Tuple[str, ...]:
    """The environment variables the scripts read (``${NAME:-default}``), e.g. DATA, SHOTS, CFG,
    and a method's own switches such as NCTX in scripts/coop/fewshot.sh.

    Their values are captured at plan time and given to every run, so a run executes as
    planned, on this machine or on a SLURM node, whatever the shell it starts from.
    """
    names = set()
    for path in sorted(scripts_dir.glob("*.sh")) + sorted(scripts_dir.glob("*/*.sh")):
        names.update(_DEFAULTED_VARIABLE.findall(path.read_text()))
    names.discard("SEMPT_PLAN")  # the planner's own switch, never a run's
    return tuple(sorted(names | {"DATA"}))


class PlanError(RuntimeError):
    """The scripts could not plan the grid (the message names the script and the fix)."""


@dataclass(frozen=True)
class Invocation:
    """One call of a method's script: ``bash scripts/<folder>/<script> ARGS``."""

    folder: str
    script: str
    args: Tuple[str, ...]

    def command(self) -> List[str]:
        return ["bash", str(SCRIPTS / self.folder / self.script), *self.args]

    def describe(self) -> str:
        return " ".join(["scripts/" + self.folder + "/" + self.script, *self.args])


@dataclass
class Run:
    """One run: an output folder, the script call that makes it and the runs it needs."""

    run_id: str  # the output folder relative to the output root
    outdir: str  # absolute
    trainer: str
    folder: str
    script: str
    args: List[str]
    argv: List[str]  # the train.py command the script runs (for the record and --dry-run)
    protocols: List[str]
    source: str = ""  # cross-dataset runs: the dataset the model is trained on
    deps: List[str] = field(default_factory=list)  # run ids

    @property
    def invocation(self) -> Invocation:
        return Invocation(self.folder, self.script, tuple(self.args))

    @property
    def model_dir(self) -> Optional[str]:
        if "--model-dir" in self.argv:
            return self.argv[self.argv.index("--model-dir") + 1]
        return None


@dataclass
class Plan:
    """The runs of one grid, in an order where every run follows the runs it needs."""

    output: str
    env: Dict[str, str]
    grid: Dict
    runs: List[Run]
    created: str = ""

    def by_id(self) -> Dict[str, Run]:
        return {r.run_id: r for r in self.runs}

    def chains(self) -> List[List[Run]]:
        """The runs grouped by dependency (a training with its evaluations), each in run order."""
        parent = {r.run_id: r.run_id for r in self.runs}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for run in self.runs:
            for dep in run.deps:
                parent[find(run.run_id)] = find(dep)
        groups: Dict[str, List[Run]] = {}
        for run in self.runs:  # plan order is dependency order
            groups.setdefault(find(run.run_id), []).append(run)
        return list(groups.values())

    def digest(self) -> str:
        key = json.dumps({"grid": self.grid, "env": self.env}, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def to_dict(self) -> Dict:
        return {"version": 1, "created": self.created, "output": self.output, "env": self.env,
                "grid": self.grid, "runs": [asdict(r) for r in self.runs]}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Plan":
        return cls(output=data["output"], env=dict(data["env"]), grid=dict(data["grid"]),
                   runs=[Run(**r) for r in data["runs"]], created=data.get("created", ""))


def benchmark_dir(output: str) -> Path:
    """Where the runner keeps its own files (plans, events, console logs, SLURM files)."""
    return Path(output) / "benchmark"


def script_env(output: str, environ: Mapping[str, str]) -> Dict[str, str]:
    """The scripts' environment for runs under ``output``, from the caller's environment."""
    env = {k: environ[k] for k in script_variables() if environ.get(k)}
    if "DATA" not in env:
        raise PlanError("DATA is not set: export DATA=/path/to/datasets (the folder holding e.g. "
                        "eurosat/, imagenet/, or where the synthetic world is written)")
    env["DATA"] = osp.abspath(env["DATA"])
    if not osp.isdir(env["DATA"]):
        raise PlanError(f"DATA={env['DATA']} is not a directory")
    env["OUTPUT"] = osp.abspath(output)
    env.setdefault("PYTHON", sys.executable)
    return env


def child_environ(env: Mapping[str, str], extra: Optional[Mapping[str, str]] = None,
                  environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The process environment of a script call: the caller's, with the script variables as planned."""
    variables = set(script_variables())
    base = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in variables}
    return {**base, **env, **(extra or {})}


def plan_invocation(invocation: Invocation, env: Mapping[str, str]) -> Dict:
    """What the script would run: its ``SEMPT_PLAN`` record (see ``scripts/lib.sh``)."""
    result = subprocess.run(invocation.command(), cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=child_environ(env, {"SEMPT_PLAN": "1"}))
    if result.returncode != 0:
        raise PlanError(f"planning `{invocation.describe()}` failed: {result.stderr.strip() or result.stdout.strip()}")
    records = [line[len(PLAN_PREFIX):] for line in result.stdout.splitlines() if line.startswith(PLAN_PREFIX)]
    if len(records) != 1:
        raise PlanError(f"`{invocation.describe()}` in plan mode printed {len(records)} SEMPT_PLAN lines, "
                        f"expected 1; its output:\n{result.stdout}")
    return json.loads(records[0], strict=False)


def _method_opts(grid: Grid, methods: Sequence[Method]) -> Dict[str, List[str]]:
    """Each selected method's extra overrides; a key naming no selected method is an error."""
    opts: Dict[str, List[str]] = {m.folder: list(grid.opts) for m in methods}
    for key, values in grid.method_opts.items():
        match = [m for m in methods if key.lower() in (m.trainer.lower(), m.folder.lower())]
        if not match:
            raise PlanError(f"method_opts names '{key}', which is not among the selected methods "
                            f"({', '.join(m.trainer for m in methods)})")
        opts[match[0].folder] += list(values)
    return opts


def entry_invocations(grid: Grid, methods: Sequence[Method]) -> List[Tuple[Invocation, str]]:
    """The script calls a grid asks for, with their protocol (cross-dataset trainings come later)."""
    opts = _method_opts(grid, methods)
    calls: List[Tuple[Invocation, str]] = []
    for protocol in grid.protocols:
        for method, backbone in ((m, b) for m in methods for b in (grid.backbones or [""])):
            extra = tuple(opts[method.folder]) + tuple(backbone_opts(backbone))
            for dataset in grid.datasets_for(protocol):
                for seed in grid.seeds:
                    s = str(seed)
                    if protocol == "base2new":
                        calls.append((Invocation(method.folder, "base2new_train.sh", (dataset, s) + extra), protocol))
                        calls.append((Invocation(method.folder, "base2new_test.sh", (dataset, s) + extra), protocol))
                    elif protocol in ("cross_dataset", "domain_generalization"):
                        calls.append((Invocation(method.folder, "xd_test.sh", (dataset, s) + extra), protocol))
                    else:
                        for shots in grid.shots:
                            calls.append((Invocation(method.folder, "fewshot.sh", (dataset, str(shots), s) + extra),
                                          protocol))
    return calls


def _plan_all(calls: Sequence[Invocation], env: Mapping[str, str]) -> List[Dict]:
    # Each call is a short bash (and for tests a YAML read); a few at once hide the latency.
    with ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 1) * 2))) as pool:
        return list(pool.map(lambda inv: plan_invocation(inv, env), calls))


def _topological(runs: List[Run]) -> List[Run]:
    by_id = {r.run_id: r for r in runs}
    done: set = set()
    ordered: List[Run] = []

    def visit(run: Run, path: Tuple[str, ...]) -> None:
        if run.run_id in done:
            return
        if run.run_id in path:
            raise PlanError(f"circular dependency between runs: {' -> '.join(path + (run.run_id,))}")
        for dep in run.deps:
            visit(by_id[dep], path + (run.run_id,))
        done.add(run.run_id)
        ordered.append(run)

    for run in runs:
        visit(run, ())
    return ordered


def build_plan(grid: Grid, output: str, environ: Optional[Mapping[str, str]] = None,
               methods: Optional[Sequence[Method]] = None) -> Plan:
    """Plan ``grid`` under the output root ``output`` with the scripts' plan mode."""
    env = script_env(output, os.environ if environ is None else environ)
    chosen = select_methods(grid.methods, methods if methods is not None else discover_methods())
    entries = entry_invocations(grid, chosen)
    records = _plan_all([inv for inv, _ in entries], env)
    planned: List[Tuple[Invocation, str, Dict]] = [(inv, proto, rec) for (inv, proto), rec in zip(entries, records)]

    # The training each cross-dataset evaluation's model comes from: xd_train.sh SOURCE SEED,
    # with the evaluation's own overrides (the method's and the backbone's).
    trainings: Dict[Invocation, List[str]] = {}
    for inv, proto, rec in planned:
        if inv.script == "xd_test.sh":
            seed = inv.args[1]
            train = Invocation(inv.folder, "xd_train.sh", (rec["source"], seed) + tuple(inv.args[2:]))
            protocols = trainings.setdefault(train, [])
            if proto not in protocols:
                protocols.append(proto)
    train_records = _plan_all(list(trainings), env)
    planned = [(inv, proto, rec) for (inv, protos), rec in zip(trainings.items(), train_records)
               for proto in protos] + planned

    root = osp.abspath(output)
    runs: Dict[str, Run] = {}
    for inv, proto, rec in planned:
        outdir = osp.normpath(osp.join(rec["cwd"], rec["outdir"]))
        run_id = osp.relpath(outdir, root) if outdir.startswith(root + os.sep) else outdir
        if run_id in runs:
            known = runs[run_id]
            if known.argv != rec["argv"]:
                raise PlanError(f"two script calls write {outdir} with different commands: "
                                f"`{known.invocation.describe()}` and `{inv.describe()}`")
            if proto not in known.protocols:
                known.protocols.append(proto)
            continue
        runs[run_id] = Run(run_id=run_id, outdir=outdir, trainer=rec["trainer"], folder=inv.folder,
                           script=inv.script, args=list(inv.args), argv=list(rec["argv"]), protocols=[proto],
                           source=rec.get("source", ""))
    by_outdir = {r.outdir: r for r in runs.values()}
    for run in runs.values():
        model_dir = run.model_dir
        if model_dir is None:
            continue
        producer = by_outdir.get(osp.normpath(osp.join(REPO, model_dir)))
        if producer is None:
            raise PlanError(f"`{run.invocation.describe()}` loads the model in {model_dir}, which no planned run "
                            "writes; plan the training that makes it in the same grid")
        run.deps.append(producer.run_id)
    return Plan(output=root, env=env, grid=grid.to_dict(), runs=_topological(list(runs.values())),
                created=time.strftime("%Y-%m-%dT%H:%M:%S"))


def save_plan(plan: Plan) -> Path:
    """Store the plan under ``<output>/benchmark/plans/`` (same grid and environment: same file)."""
    folder = benchmark_dir(plan.output) / "plans"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plan.digest()}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(plan.to_dict(), indent=1))
    os.replace(tmp, path)  # readers never see half a plan
    return path


def load_plans(output: str) -> List[Plan]:
    """Every plan stored under ``output``, oldest first."""
    folder = benchmark_dir(output) / "plans"
    paths = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    return [Plan.from_dict(json.loads(p.read_text())) for p in paths]


def merged_runs(plans: Iterable[Plan]) -> List[Run]:
    """The runs of several plans, each once (the latest plan's record wins), in plan order."""
    merged: Dict[str, Run] = {}
    for plan in plans:
        for run in plan.runs:
            merged.pop(run.run_id, None)
            merged[run.run_id] = run
    return _topological(list(merged.values()))
