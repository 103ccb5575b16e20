"""The main job: its methods are the runner's (a method added with its scripts is accepted),
and it calls the runner and the table in this process (issue 18 part 5)."""
from __future__ import annotations

import os

import pytest

from tools import run_synthetic
from tools.grid.methods import Method, discover_methods


@pytest.fixture()
def calls(monkeypatch, tmp_path):
    seen = {}

    def runner(argv):
        seen["runner"] = list(argv)
        seen["environ"] = {k: os.environ.get(k) for k in ("DATA", "CFG")}
        return 0

    monkeypatch.setattr(run_synthetic.benchmark_cli, "main", runner)
    monkeypatch.setattr(run_synthetic, "report_base2new", lambda root, *a, **k: seen.setdefault("table", root))
    monkeypatch.setattr(run_synthetic.synthetic_world, "ensure_world", lambda root: None)
    monkeypatch.setenv("CFG", "left_in_the_shell")
    return seen


def test_every_method_with_scripts_runs_by_default(calls, tmp_path):
    assert run_synthetic.main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--seeds", "1"]) == 0
    argv = calls["runner"]
    methods = argv[argv.index("--methods") + 1:argv.index("--seeds")]
    assert methods == [m.folder for m in discover_methods()] and len(methods) >= 13
    assert argv[:5] == ["run", "--protocol", "base2new", "--datasets", "synthetic"]
    # The runner read the data root and no CFG from the environment; the caller's is restored.
    assert calls["environ"] == {"DATA": str((tmp_path / "data").resolve()), "CFG": None}
    assert os.environ["CFG"] == "left_in_the_shell"
    assert calls["table"] == str(tmp_path / "out" / "base2new")


def test_a_method_added_with_its_scripts_is_accepted(calls, tmp_path, monkeypatch, capsys):
    found = discover_methods() + [Method("vpt", "VPT")]  # as scripts/vpt/method.sh would add it
    monkeypatch.setattr(run_synthetic, "discover_methods", lambda: found)
    assert run_synthetic.main(["--methods", "VPT", "coop", "--data", str(tmp_path), "--output", str(tmp_path)]) == 0
    argv = calls["runner"]
    assert argv[argv.index("--methods") + 1:argv.index("--seeds")] == ["vpt", "coop"]
    with pytest.raises(SystemExit):
        run_synthetic.main(["--methods", "nosuch", "--data", str(tmp_path)])
    assert "unknown method 'nosuch'" in capsys.readouterr().err
