"""SemPT's shipped configs write the deep label branches' keys in SemPT's own node
(``TRAINER.SEMPT.MAPLE`` / ``.PROMPTSRC``), and the former spelling (the baselines' nodes)
resolves to the same settings."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import trainers
from dassl.engine import TRAINER_REGISTRY
from trainers.config import default_cfg, resolve_config_aliases

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs" / "trainers" / "SemPT").glob("*.yaml"))
trainers.register_all()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_keep_the_branch_keys_in_sempts_node(path):
    data = yaml.safe_load(path.read_text())
    assert set(data["TRAINER"]) == {"SEMPT"}, "SemPT's configs set no other method's node"
    cfg = default_cfg()
    cfg.merge_from_file(str(path))
    branch = cfg.TRAINER.SEMPT.LABEL_BRANCH
    if branch != "coop":
        written = data["TRAINER"]["SEMPT"][branch.upper()]
        assert written and all(cfg.TRAINER.SEMPT[branch.upper()][k] == v for k, v in written.items())


@pytest.mark.parametrize("path", [p for p in SHIPPED if "maple" in p.name or "promptsrc" in p.name], ids=lambda p: p.name)
def test_the_former_spelling_means_the_same(path, tmp_path):
    """The config written as before (the branch's keys in TRAINER.MAPLE / TRAINER.PROMPTSRC)."""
    data = yaml.safe_load(path.read_text())
    branch = data["TRAINER"]["SEMPT"]["LABEL_BRANCH"].upper()
    data["TRAINER"][branch] = data["TRAINER"]["SEMPT"].pop(branch)
    former = tmp_path / path.name
    former.write_text(yaml.safe_dump(data))
    ours, theirs = default_cfg(), default_cfg()
    ours.merge_from_file(str(path))
    theirs.merge_from_file(str(former))
    resolve_config_aliases(theirs, "SEMPT", TRAINER_REGISTRY.get("SemPT").CONFIG_ALIASES)
    assert theirs.TRAINER.SEMPT == ours.TRAINER.SEMPT
