"""Each trainer end to end on a fabricated EuroSAT tree with a tiny random CLIP (CPU, fp32)."""
import os.path as osp

import pytest
import torch

import train
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from tests.utils.fabricate import make_eurosat_tree
from trainers.common import trainer as trainer_module

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {
    "CoOp": "CoOp/vit_b16_ctxv1",
    "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1",
    "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv1",
    "ZeroshotCLIP": "CoOp/vit_b16",
    "ZeroshotCLIP2": "CoOp/vit_b16",
}
NODES = {"CoOp": "COOP", "CoCoOp": "COCOOP", "KgCoOp": "KGCOOP", "ZeroshotCLIP": "COOP", "ZeroshotCLIP2": "COOP"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_eurosat_tree(tmp_path_factory.mktemp("data"), n_per_class=6)


def run_args(trainer, data_root, clip_path, output_dir, subsample, *extra):
    """train.py arguments: the shipped config, shrunk to the tiny CLIP and 2 epochs."""
    return [
        "--root", data_root, "--seed", "1", "--trainer", trainer, "--output-dir", str(output_dir),
        "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers", CONFIGS[trainer] + ".yaml"),
        *extra,
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "4",
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", subsample, "DATASET.CACHE_DIR", str(output_dir) + "_cache",
        f"TRAINER.{NODES[trainer]}.PREC", "fp32",
    ]


def read_log(output_dir) -> str:
    with open(osp.join(output_dir, "log.txt")) as f:
        return f.read()


@pytest.mark.parametrize("name", ["CoOp", "CoCoOp", "KgCoOp"])
def test_train_base_then_evaluate_new(name, data_root, tiny_clip_path, tmp_path):
    train_dir, test_dir = tmp_path / "train_base", tmp_path / "test_new"
    train.cli(run_args(name, data_root, tiny_clip_path, train_dir, "base"))
    log = read_log(train_dir)
    assert "Finish training" in log and "=> result" in log
    checkpoint = train_dir / "prompt_learner" / "model.pth.tar-2"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    expected = {"ctx"} | ({"meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
                           "meta_net.linear2.bias"} if name == "CoCoOp" else set())
    assert set(state) == expected  # only what trains: no class buffers, no dead parameters

    train.cli(run_args(name, data_root, tiny_clip_path, test_dir, "new",
                       "--eval-only", "--model-dir", str(train_dir), "--load-epoch", "2"))
    log = read_log(test_dir)
    assert f'Loading weights to prompt_learner from "{checkpoint}"' in log
    assert "=> result" in log and "* total: 10" in log  # 5 new classes x 2 test images


@pytest.mark.parametrize("name", ["ZeroshotCLIP", "ZeroshotCLIP2"])
def test_zero_shot_evaluates_new_classes(name, data_root, tiny_clip_path, tmp_path):
    train.cli(run_args(name, data_root, tiny_clip_path, tmp_path / "zs", "new", "--eval-only"))
    log = read_log(tmp_path / "zs")
    assert "=> result" in log and "* total: 10" in log


def test_zero_shot_without_eval_only_evaluates_instead_of_training(data_root, tiny_clip_path, tmp_path):
    """Nothing trains: train.py without --eval-only runs no epoch and gives the --eval-only result."""
    train.cli(run_args("ZeroshotCLIP", data_root, tiny_clip_path, tmp_path / "eval", "new", "--eval-only"))
    train.cli(run_args("ZeroshotCLIP", data_root, tiny_clip_path, tmp_path / "train", "new"))
    log = read_log(tmp_path / "train")
    assert "no trainable parameters" in log and "epoch [" not in log
    assert log.index("Finish training") < log.index("=> result")
    result = read_log(tmp_path / "eval").split("=> result")[1]
    assert result.split("* macro_f1")[0] in log  # same total, correct and accuracy
    assert not (tmp_path / "train" / "prompt_learner").exists()  # nothing to save
    with pytest.raises(SystemExit, match="Refusing to overwrite the finished run"):
        train.cli(run_args("ZeroshotCLIP", data_root, tiny_clip_path, tmp_path / "train", "new"))


def test_zero_shot_forward_backward_reports_the_loss_and_steps_nothing(data_root, tiny_clip_path, tmp_path):
    trainer = build("ZeroshotCLIP", data_root, tiny_clip_path, tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batch = next(iter(trainer.train_loader_x))
    summary = trainer.forward_backward({"img": batch["img"], "label": batch["label"]})
    logits = trainer.model(batch["img"])
    assert summary["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, batch["label"]).item(), abs=1e-6)
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())


def build(name, data_root, clip_path, output_dir, *opts):
    args = train.build_parser().parse_args(run_args(name, data_root, clip_path, output_dir, "base", *opts))
    train.register_components()
    cfg = train.setup_cfg(args)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


@pytest.fixture()
def count_clip_loads(monkeypatch):
    loads = []
    original = trainer_module.load_clip_to_cpu
    monkeypatch.setattr(trainer_module, "load_clip_to_cpu", lambda cfg: loads.append(1) or original(cfg))
    return loads


@pytest.mark.parametrize("name", ["CoOp", "KgCoOp"])
def test_evaluation_encodes_text_once(name, data_root, tiny_clip_path, tmp_path, count_text_encoder, count_clip_loads):
    trainer = build(name, data_root, tiny_clip_path, tmp_path)
    assert len(count_clip_loads) == 1  # KgCoOp's template features come from the same CLIP
    build_calls = len(count_text_encoder)
    assert build_calls == (1 if name == "KgCoOp" else 0)  # the KG features, once
    assert len(trainer.test_loader) > 1
    trainer.test()
    assert len(count_text_encoder) == build_calls + 1
    trainer.test()
    assert len(count_text_encoder) == build_calls + 2


def test_kgcoop_training_does_not_recompute_kg_features(data_root, tiny_clip_path, tmp_path, count_text_encoder):
    trainer = build("KgCoOp", data_root, tiny_clip_path, tmp_path)
    kg = trainer.model.kg_text_features.clone()
    before = len(count_text_encoder)
    batch = next(iter(trainer.train_loader_x))
    trainer.forward_backward(batch)
    assert len(count_text_encoder) == before + 1  # the learned prompts only
    assert torch.equal(trainer.model.kg_text_features, kg)
    assert trainer.w == 8.0


def test_kgcoop_honours_upstream_w_spelling_and_ctx_init(data_root, tiny_clip_path, tmp_path):
    trainer = build("KgCoOp", data_root, tiny_clip_path, tmp_path,
                    "TRAINER.COOP.W", "2.0", "TRAINER.KGCOOP.CTX_INIT", "a centered satellite photo of")
    assert trainer.w == 2.0
    assert trainer.model.prompt_learner.n_ctx == 5


def test_zero_shot_features_computed_once(data_root, tiny_clip_path, tmp_path, count_text_encoder, count_clip_loads):
    trainer = build("ZeroshotCLIP2", data_root, tiny_clip_path, tmp_path)
    assert len(count_clip_loads) == 1
    assert sum(count_text_encoder) == 5 * 8  # 5 base classes x (7 templates + the EuroSAT one)
    calls = len(count_text_encoder)
    trainer.test()
    assert len(count_text_encoder) == calls
    from trainers.common.templates import IMAGENET_TEMPLATES_SELECT
    assert len(IMAGENET_TEMPLATES_SELECT) == 7  # the class-level list is not mutated
