"""Backbones in the workflow: the scripts take BACKBONE / PRETRAINED, the run folders name the
backbone, the runner has a backbone axis and the report keeps backbones apart."""
from __future__ import annotations

import json

import pytest

from tools.grid.collect import MethodKey
from tools.grid.grid import backbone_opts, build_grid
from tools.grid.plan import build_plan
from tools.grid.published import Published
from tools.grid.tables import method_labels, published_for

from .conftest import REPO, script

SIGLIP = "open_clip:ViT-B-16-SigLIP2"


def planned(result) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.startswith("SEMPT_PLAN ")]
    assert len(lines) == 1, result.stdout + result.stderr
    return json.loads(lines[0][len("SEMPT_PLAN "):])


def test_the_scripts_take_the_backbone_from_variables_and_name_the_folder_after_it(bench_env):
    plain = planned(script("coop/base2new_train.sh", "synthetic", "1", env=dict(bench_env, SEMPT_PLAN="1")))
    assert plain["outdir"].endswith("/CoOp/synthetic/seed1") and "MODEL.BACKBONE.NAME" not in plain["argv"]

    env = dict(bench_env, SEMPT_PLAN="1", BACKBONE=SIGLIP, PRETRAINED="webli")
    run = planned(script("coop/base2new_train.sh", "synthetic", "1", env=env))
    assert run["outdir"].endswith("/CoOp/synthetic__openclip-ViT-B-16-SigLIP2-webli/seed1")
    argv = run["argv"]
    assert argv[argv.index("MODEL.BACKBONE.NAME") + 1] == SIGLIP
    assert argv[argv.index("MODEL.BACKBONE.PRETRAINED") + 1] == "webli"

    # The evaluation loads the model of the same backbone; a KEY VALUE override names it as well.
    test = planned(script("coop/base2new_test.sh", "synthetic", "1", env=env))
    assert test["argv"][test["argv"].index("--model-dir") + 1].endswith("synthetic__openclip-ViT-B-16-SigLIP2-webli/seed1")
    config_file = str(REPO / "pretrained" / "tiny_clip_synthetic.pt")
    override = planned(script("coop/base2new_train.sh", "synthetic", "1", "MODEL.BACKBONE.NAME", config_file,
                              env=dict(bench_env, SEMPT_PLAN="1")))
    assert override["outdir"].endswith("/CoOp/synthetic__tiny_clip_synthetic/seed1")


def test_the_runner_has_a_backbone_axis(tmp_path, bench_env):
    grid = build_grid(protocols=["base2new", "xd"], methods=["CoOp"], datasets=["synthetic"], seeds=[1],
                      backbones=["pretrained/tiny_clip_synthetic.pt", f"{SIGLIP}@webli"])
    assert backbone_opts(f"{SIGLIP}@webli") == ["MODEL.BACKBONE.NAME", SIGLIP, "MODEL.BACKBONE.PRETRAINED", "webli"]
    plan = build_plan(grid, str(tmp_path / "out"), environ=bench_env)
    b2n = [r for r in plan.runs if r.run_id.startswith("base2new/")]
    assert len(b2n) == 4 and len({r.outdir for r in plan.runs}) == len(plan.runs)
    for run in plan.runs:  # every run, cross-dataset trainings included, on its axis entry's backbone
        name = run.argv[run.argv.index("MODEL.BACKBONE.NAME") + 1]
        tag = "__openclip-ViT-B-16-SigLIP2-webli" if name == SIGLIP else "__tiny_clip_synthetic"
        assert tag in run.run_id, run.run_id
        for dep in run.deps:
            assert tag in dep
    with pytest.raises(ValueError, match="a backbone is NAME or NAME@PRETRAINED"):
        build_grid(protocols=["base2new"], backbones=["@webli"])


def test_the_report_keeps_backbones_apart_and_compares_only_the_papers_backbone():
    default = MethodKey("CoOp", "vit_b16_ctxv1", "16")
    siglip = MethodKey("CoOp", "vit_b16_ctxv1__openclip-ViT-B-16-SigLIP2-webli", "16")
    assert (default.backbone, siglip.backbone) == ("", "openclip-ViT-B-16-SigLIP2-webli")
    labels = method_labels([default, siglip])
    assert labels == {default: "CoOp [config backbone]", siglip: "CoOp [openclip-ViT-B-16-SigLIP2-webli]"}
    assert sorted([siglip, default], key=MethodKey.sort_key) == [default, siglip]  # grouped by backbone
    registry = Published.load()
    assert all(row.backbone == "ViT-B/16" for row in registry.rows)  # the registry says its backbone
    assert published_for(registry, default) is registry and published_for(registry, siglip) is None
