"""``python -m tools.data download``: fetch, verify and lay out the datasets; the dry run.

Per dataset, each file of its :class:`~tools.data.sources.DatasetPlan` is taken, in order, from
the first of: its outputs already in place (nothing to do); the file already under
``$DATA/archives/<folder>/`` (downloaded earlier or put there by a person); the mirror
(``--mirror``); its public source. Datasets run in parallel (``--jobs``), each in its own
thread, so a failing source stops only its own dataset. The summary says, per dataset,
ready / failed (why) / manual (the steps).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

from . import fetch
from .check import benchmark_readers, check_dataset
from .install import install
from .sources import DatasetPlan, RemoteFile, build_plans, select_plans, with_manual_steps

READY, ALREADY, FAILED, MANUAL = "ready", "ready (already in place)", "FAILED", "MANUAL STEP"
EXIT_OK, EXIT_FAILED, EXIT_MANUAL = 0, 1, 2
ARCHIVES_DIRNAME = "archives"
PLACED_BY_HAND = "placed by hand"


@dataclass
class Options:
    root: str
    archives: str
    mirror: Optional[str] = None
    jobs: int = 4
    keep_archives: bool = False


@dataclass
class Outcome:
    config: str
    status: str
    details: List[str] = field(default_factory=list)
    manual_steps: str = ""


# ------------------------------------------------------------------------- local state
def dataset_dir(opts: Options, plan: DatasetPlan) -> str:
    return os.path.join(opts.root, plan.folder)


def archive_path(opts: Options, plan: DatasetPlan, entry: RemoteFile) -> str:
    return os.path.join(opts.archives, plan.folder, entry.name)


def fetch_target(opts: Options, plan: DatasetPlan, entry: RemoteFile) -> str:
    """Where a download of ``entry`` is written: archives are kept apart, plain files go in place."""
    if entry.is_archive:
        return archive_path(opts, plan, entry)
    return os.path.join(dataset_dir(opts, plan), entry.outputs[0])


def in_place(opts: Options, plan: DatasetPlan, entry: RemoteFile) -> bool:
    return all(os.path.exists(os.path.join(dataset_dir(opts, plan), rel)) for rel in entry.outputs)


def local_copy(opts: Options, plan: DatasetPlan, entry: RemoteFile) -> Optional[str]:
    """A complete copy of ``entry`` on disk (never a ``.part``), if any."""
    path = archive_path(opts, plan, entry)
    return path if os.path.isfile(path) else None


def plan_is_ready(opts: Options, plan: DatasetPlan) -> bool:
    """Everything ``tools.data check`` requires is there (as in an existing CoOp data folder, which
    may lack what the readers do not read, such as Food-101's meta/): nothing is fetched then."""
    if plan.expects:
        return all(os.path.exists(os.path.join(dataset_dir(opts, plan), rel)) for rel in plan.expects)
    return all(in_place(opts, plan, f) for f in plan.files if not f.optional)


def source_url(opts: Options, plan: DatasetPlan, entry: RemoteFile) -> Optional[str]:
    """The URL ``entry`` is fetched from: ``<mirror>/<folder>/<name>`` with a mirror, else its own."""
    if opts.mirror:
        return f"{opts.mirror.rstrip('/')}/{plan.folder}/{entry.name}"
    return entry.url


# ------------------------------------------------------------------------------ fetching
class _Bar:
    """A tqdm progress bar fed by the downloader (hidden when stderr is not a terminal)."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=None, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                        leave=False, disable=None, dynamic_ncols=True)

    def __call__(self, done: int, total: Optional[int]) -> None:
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _copy_local(src: str, part: str) -> None:
    if not os.path.isfile(src):
        raise fetch.FetchError(f"{src} is not in the mirror folder")
    shutil.copyfile(src, part)


def download_file(opts: Options, plan: DatasetPlan, entry: RemoteFile) -> str:
    """Fetch ``entry`` to its target through a ``.part`` file, verify it, rename it; the target."""
    target = fetch_target(opts, plan, entry)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    part = target + ".part"
    url = source_url(opts, plan, entry)
    bar = _Bar(f"{plan.config}/{entry.name}")
    try:
        if opts.mirror and not opts.mirror.startswith(("http://", "https://")):
            _copy_local(os.path.join(opts.mirror.replace("file://", "", 1), plan.folder, entry.name), part)
            origin = opts.mirror
        elif url:
            fetch.http_download(url, part, progress=bar)
            origin = url
        else:
            fetch.drive_download(entry.drive_id, part)
            origin = f"Google Drive {entry.drive_id}"
    finally:
        bar.close()
    try:
        md5 = fetch.verify(part, entry.md5, entry.is_split_file, name=f"the download of {entry.name} from {origin}")
    except fetch.FetchError as err:
        os.remove(part)  # a wrong file: resuming it could never succeed
        raise fetch.FetchError(f"{err}; it was deleted") from None
    os.replace(part, target)
    if entry.is_archive:
        fetch.write_record(target, md5, origin)
    return target


def obtain(opts: Options, plan: DatasetPlan, entry: RemoteFile, paths: Dict[str, str]) -> str:
    """Make ``entry``'s outputs exist: "done" or "manual" (no source without a person); raises FetchError."""
    if in_place(opts, plan, entry):
        return "done"
    local = local_copy(opts, plan, entry)
    if local is not None:
        had_record = fetch.read_record(local) is not None
        md5 = fetch.verify(local, entry.md5, entry.is_split_file)
        if not had_record:
            fetch.write_record(local, md5, PLACED_BY_HAND)
    elif entry.manual and not opts.mirror:
        return "manual"
    else:
        local = download_file(opts, plan, entry)
    paths[entry.name] = local
    install(entry, local, dataset_dir(opts, plan), paths)
    return "done"


def remove_fetched_archives(opts: Options, paths: Dict[str, str]) -> None:
    """Delete the archives this tool downloaded, once their dataset is in place; a person's stay."""
    if opts.keep_archives:
        return
    for path in paths.values():
        record = fetch.read_record(path)
        if record and record.get("fetched_from") != PLACED_BY_HAND and path.startswith(opts.archives + os.sep):
            fetch.remove_with_record(path)


def run_dataset(opts: Options, plan: DatasetPlan) -> Outcome:
    """Fetch and install every file of ``plan``; one dataset's failure never raises."""
    if plan_is_ready(opts, plan):
        return Outcome(plan.config, ALREADY)
    outcome = Outcome(plan.config, READY)
    paths: Dict[str, str] = {}
    failed: List[str] = []
    manual: List[str] = []
    for entry in plan.files:
        try:
            state = obtain(opts, plan, entry, paths)
        except (fetch.FetchError, OSError) as err:
            message = f"{entry.name}: {err}"
            if entry.optional:
                outcome.details.append(f"optional {message} (the readers work without it)")
            else:
                failed.append(message)
            continue
        if state == "manual":
            manual.append(entry.name)
    if failed:
        outcome.status = FAILED
        outcome.details[:0] = failed
        outcome.details.append(
            f"A file can also be put by hand into {os.path.join(opts.archives, plan.folder)}/; "
            "then run the command again.")
    elif manual:
        outcome.status = MANUAL
        outcome.details.insert(0, f"waiting for {', '.join(manual)}")
    else:
        remove_fetched_archives(opts, paths)
    if (failed or manual) and (plan.manual_steps or manual):
        outcome.manual_steps = with_manual_steps(plan, opts.archives, opts.root)
    return outcome


# --------------------------------------------------------------------------- disk space
def human(n: Optional[float]) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def space_needed(opts: Options, plans: Sequence[DatasetPlan]) -> Tuple[int, List[str]]:
    """Bytes still to write (downloads plus unpacked archives, as far as sizes are known) and
    the files whose size is unknown. Asks the servers for sizes (HEAD), in parallel."""
    todo: List[Tuple[DatasetPlan, RemoteFile, Optional[str]]] = []
    for plan in plans:
        if plan_is_ready(opts, plan):
            continue
        for entry in plan.files:
            if in_place(opts, plan, entry):
                continue
            local = local_copy(opts, plan, entry)
            if local is None and entry.manual and not opts.mirror:
                continue
            todo.append((plan, entry, local))

    def size(item) -> Optional[int]:
        plan, entry, local = item
        if local is not None:
            return os.path.getsize(local)
        url = source_url(opts, plan, entry)
        if url and url.startswith(("http://", "https://")):
            return fetch.remote_size(url)
        if opts.mirror and url:
            path = os.path.join(opts.mirror.replace("file://", "", 1), plan.folder, entry.name)
            return os.path.getsize(path) if os.path.isfile(path) else None
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(size, todo))
    needed, unknown = 0, []
    for (plan, entry, local), n in zip(todo, sizes):
        if n is None:
            unknown.append(f"{plan.config}/{entry.name}")
            continue
        part = fetch_target(opts, plan, entry) + ".part"
        to_download = 0 if local else max(0, n - (os.path.getsize(part) if os.path.exists(part) else 0))
        needed += to_download + (n if entry.is_archive else 0)  # unpacking writes about the archive's size
    return needed, unknown


def free_space(path: str) -> int:
    while not os.path.exists(path):
        path = os.path.dirname(path) or "."
    return shutil.disk_usage(path).free


# ------------------------------------------------------------------------------ dry run
def describe(opts: Options, plans: Sequence[DatasetPlan]) -> str:
    """The dry run: per dataset, each file's source, size, checksum and target. Offline."""
    lines = []
    for plan in plans:
        ddir = dataset_dir(opts, plan)
        state = "already in place" if plan_is_ready(opts, plan) else "to do"
        lines.append(f"== {plan.config} ({plan.reader}) -> {ddir}/  [{state}]")
        for entry in plan.files:
            target = fetch_target(opts, plan, entry)
            done = in_place(opts, plan, entry)
            part = target + ".part"
            if entry.manual and not opts.mirror:
                size = entry.size_hint or "unknown"
            else:
                size = entry.size_hint or "unknown offline (asked from the server before downloading)"
            if os.path.isfile(target):
                size = f"{human(os.path.getsize(target))} (on disk)"
            elif os.path.isfile(part):
                size += f"; {human(os.path.getsize(part))} already downloaded, resumes"
            flags = " (optional)" if entry.optional else ""
            lines.append(f"  {entry.name}{flags}: {'in place' if done else 'to fetch'}")
            if entry.manual and not opts.mirror:
                lines.append(f"    source:   MANUAL: {entry.manual}")
            else:
                lines.append(f"    source:   {source_url(opts, plan, entry) or entry.source_text()}")
            if entry.origin:
                lines.append(f"    known by: {entry.origin}")
            lines.append(f"    size:     {size}")
            lines.append(f"    checksum: " + (f"md5 {entry.md5}" if entry.md5 else
                                             "none published" + ("; checked to be a CoOp split (train/val/test)"
                                                                 if entry.is_split_file else "")))
            if entry.is_archive:
                moved = ", ".join(f"{src} -> {os.path.join(ddir, dst)}" for src, dst in entry.moves) or \
                    ", ".join(os.path.join(ddir, rel) for rel in entry.outputs)
                lines.append(f"    target:   {target}, unpacked: {moved}")
            else:
                lines.append(f"    target:   {target}")
        for note in plan.notes:
            lines.append(f"  note: {note}")
        if any(f.manual for f in plan.files) and not opts.mirror and not plan_is_ready(opts, plan):
            lines.append("  manual steps:\n" + "\n".join("    " + l for l in with_manual_steps(plan, opts.archives, opts.root)
                                                       .splitlines()))
        lines.append("")
    lines.append(f"{len(plans)} datasets planned: {', '.join(p.config for p in plans)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the run
def post_check(opts: Options, outcomes: Sequence[Outcome]) -> None:
    """Run ``tools.data check`` on each dataset installed now: ready means its reader loads."""
    readers = benchmark_readers()
    for outcome in outcomes:
        if outcome.status != READY:
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # the readers print progress lines
            usable, rows, fixes = check_dataset(opts.root, readers[outcome.config])
        if usable:
            outcome.details.append("checked: " + rows[-1][-1])
        else:
            outcome.status = FAILED
            outcome.details.append("installed, but tools.data check fails: " + (" ".join(fixes) or "see check"))


def summary(outcomes: Sequence[Outcome]) -> str:
    rows = [[o.config, o.status, "\n".join(o.details[:4])] for o in outcomes]
    text = "\n" + tabulate(rows, headers=["dataset", "status", "why / what next"])
    for outcome in outcomes:
        if outcome.manual_steps:
            text += f"\n\n== {outcome.config}: what a person must do ==\n{outcome.manual_steps}"
    return text


def cmd_download(root: str, names: Sequence[str], *, archives: Optional[str] = None, mirror: Optional[str] = None,
                 jobs: int = 4, dry_run: bool = False, keep_archives: bool = False,
                 skip_space_check: bool = False) -> int:
    root = os.path.abspath(os.path.expanduser(root))
    archives = os.path.abspath(os.path.expanduser(archives)) if archives else os.path.join(root, ARCHIVES_DIRNAME)
    opts = Options(root=root, archives=archives, mirror=mirror, jobs=max(1, jobs), keep_archives=keep_archives)
    plans = select_plans(build_plans(archives), names)
    if dry_run:
        print(describe(opts, plans))
        return EXIT_OK
    todo = [p for p in plans if not plan_is_ready(opts, p)]
    if todo and not skip_space_check:
        needed, unknown = space_needed(opts, todo)
        free = free_space(root)
        if needed > free:
            print(f"Not enough free space under {root}: the downloads and unpacked archives need about "
                  f"{human(needed)}, {human(free)} is free. Free space, choose fewer datasets, point --root/"
                  "--archives elsewhere, or pass --skip-space-check.", file=sys.stderr)
            return EXIT_FAILED
        print(f"Disk: about {human(needed)} to write, {human(free)} free under {root}"
              + (f" (size unknown for {len(unknown)} files: {', '.join(unknown[:6])})" if unknown else ""))
    outcomes: Dict[str, Outcome] = {}
    lock = threading.Lock()

    def work(plan: DatasetPlan) -> None:
        try:
            outcome = run_dataset(opts, plan)
        except Exception as err:  # a bug in one dataset's handling must not stop the others
            outcome = Outcome(plan.config, FAILED, [f"{type(err).__name__}: {err}"])
        with lock:
            outcomes[plan.config] = outcome
            print(f"{plan.config}: {outcome.status}", flush=True)

    pool = ThreadPoolExecutor(max_workers=opts.jobs)
    futures = [pool.submit(work, plan) for plan in plans]
    try:
        for future in futures:
            future.result()
    except KeyboardInterrupt:
        fetch.CANCEL.set()  # running downloads stop at their next chunk and keep their .part files
        pool.shutdown(wait=True, cancel_futures=True)
        fetch.CANCEL.clear()
        print("\nInterrupted. Partial downloads are kept: run the same command again to resume.", file=sys.stderr)
        return 130
    pool.shutdown()
    ordered = [outcomes[p.config] for p in plans]
    post_check(opts, ordered)
    print(summary(ordered))
    if any(o.status == FAILED for o in ordered):
        return EXIT_FAILED
    if any(o.status == MANUAL for o in ordered):
        return EXIT_MANUAL
    return EXIT_OK
