"""cost.json of CLIP trainers: precision, device and the feature cache's counts, as the log says them."""
from __future__ import annotations

import json
import re

import pytest
import torch

import train

from .test_feature_cache import cache_line, method_named, run


@pytest.fixture(autouse=True)
def _private_caches_and_no_env_report(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMPT_CACHE_DIR", str(tmp_path / "project_cache"))
    monkeypatch.setattr(train, "collect_env_info", lambda: "(not collected in this test)")


def counts_in(line: str):
    found = re.search(r"training (\d+) hits, (\d+) misses; evaluation (\d+) hits, (\d+) misses", line)
    train_hits, train_misses, eval_hits, eval_misses = map(int, found.groups())
    return {"training": {"hits": train_hits, "misses": train_misses},
            "evaluation": {"hits": eval_hits, "misses": eval_misses}}


def test_cost_records_the_feature_cache_counts_of_cold_and_warm_runs(synthetic_data_root, tmp_path):
    coop = method_named("CoOp")
    cache = tmp_path / "features"
    for name in ("cold", "warm"):
        log = run(coop, synthetic_data_root, tmp_path / name, cache)
        record = json.loads((tmp_path / name / "cost.json").read_text())
        assert record["feature_cache"] == counts_in(cache_line(log)), name
        device = "cuda" if torch.cuda.is_available() else "cpu"  # the trainers' choice (USE_CUDA True)
        assert record["precision_requested"] in ("fp16", "fp32", "amp", "bf16")
        assert record["precision"] == ("fp32" if device == "cpu" else record["precision_requested"])
        assert record["trainer"] == "CoOp" and record["dataset"] == "Synthetic" and record["device"]["type"] == device
        assert (record["cuda"]["max_memory_allocated_mb"] is None) == (device == "cpu")
        assert record["phases"]["training"]["images"] > 0 and record["phases"]["evaluation"]["images"] == 40
    assert record["feature_cache"]["training"]["misses"] == 0 and record["feature_cache"]["evaluation"]["misses"] == 0


def test_an_eval_only_method_writes_its_cost_without_training(synthetic_data_root, tmp_path):
    zero_shot = method_named("ZeroshotCLIP")
    run(zero_shot, synthetic_data_root, tmp_path / "zs", tmp_path / "features", subsample="new")
    phases = json.loads((tmp_path / "zs" / "cost.json").read_text())["phases"]
    assert phases["training"]["seconds"] == 0.0 and phases["evaluation"]["images"] == 40
