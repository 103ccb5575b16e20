"""The run folder lock: train.py holds it for the run's life; a second run stops at once."""
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import train
from dassl.run_lock import LOCK_NAME, RUN_LOCKED_EXIT_CODE, RunLock, RunLockedError, lock_holder

from .test_train_script import TOY_OPTS, offline_components  # noqa: F401  (the autouse fixture)

HOLDER = """
import sys, time
from dassl.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_second_run_on_a_held_folder_stops_with_the_holder_named(toy_root, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(str(out)):
        assert f"host {os.uname().nodename}, pid {os.getpid()}, since" in lock_holder(str(out))
        with pytest.raises(SystemExit) as exit_info:
            train.main(train.build_parser().parse_args(
                ["--root", toy_root, "--trainer", "EngineToyTrainer", "--output-dir", str(out)] + TOY_OPTS))
        assert exit_info.value.code == RUN_LOCKED_EXIT_CODE
        assert f"pid {os.getpid()}" in capsys.readouterr().err
        assert sorted(os.listdir(out)) == [LOCK_NAME]  # nothing of the folder was touched
    assert lock_holder(str(out)) is None
    train.main(train.build_parser().parse_args(
        ["--root", toy_root, "--trainer", "EngineToyTrainer", "--output-dir", str(out)] + TOY_OPTS))
    assert "=> result" in (out / "log.txt").read_text()
    assert lock_holder(str(out)) is None  # released at the end of the run


def test_lock_dies_with_its_process_even_on_sigkill(tmp_path):
    out = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, out], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.abspath(train.__file__)))
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert f"pid {proc.pid}" in lock_holder(out)
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            RunLock(out).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_holder(out) is None
    RunLock(out).acquire().release()


def test_a_probe_never_makes_a_run_fail(tmp_path):
    """lock_holder briefly takes a shared lock; a run starting at that moment waits it out."""
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(str(out / LOCK_NAME), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)
    timer = threading.Timer(0.3, lambda: os.close(fd))
    timer.start()
    start = time.monotonic()
    RunLock(str(out)).acquire().release()
    assert time.monotonic() - start >= 0.25
    timer.join()
