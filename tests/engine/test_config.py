"""Config defaults and yacs merge semantics with clear errors."""
import pytest

from dassl.config import ConfigError, get_cfg_default
from dassl.config.node import CfgNode as CN


@pytest.fixture
def cfg():
    cfg = get_cfg_default()
    # What trainers.config.extend_cfg adds, in miniature.
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.W = 1.0
    cfg.TRAINER.COOP.CTX_INIT = ""
    return cfg


def test_defaults_match_upstream_and_project_keys():
    cfg = get_cfg_default()
    assert cfg.OPTIM.NAME == "adam" and cfg.OPTIM.LR == 0.0003 and cfg.OPTIM.WEIGHT_DECAY == 5e-4
    assert cfg.OPTIM.WARMUP_EPOCH == -1 and cfg.OPTIM.WARMUP_RECOUNT is True
    assert cfg.INPUT.SIZE == (224, 224) and cfg.INPUT.RRCROP_SCALE == (0.08, 1.0)
    assert cfg.DATALOADER.NUM_WORKERS == 4 and cfg.DATALOADER.TEST.BATCH_SIZE == 32
    assert cfg.TEST.FINAL_MODEL == "last_step" and cfg.TRAIN.CHECKPOINT_FREQ == 0
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all" and cfg.DATASET.CACHE_DIR == ""
    assert cfg.SEED == -1
    # A clone: edits do not leak into the next call.
    cfg.OPTIM.LR = 1.0
    assert get_cfg_default().OPTIM.LR == 0.0003


def test_int_for_float_names_key_and_fix(cfg):
    with pytest.raises(ConfigError, match=r'"TRAINER\.COOP\.W" expects a float.*write 8\.0'):
        cfg.merge_from_list(["TRAINER.COOP.W", "8"])
    cfg.merge_from_list(["TRAINER.COOP.W", "8.0"])
    assert cfg.TRAINER.COOP.W == 8.0


def test_bool_for_str_and_float_for_int(cfg):
    with pytest.raises(ConfigError, match=r"CTX_INIT.*expects a str.*got a bool False"):
        cfg.merge_from_list(["TRAINER.COOP.CTX_INIT", "False"])
    with pytest.raises(ConfigError, match=r"MAX_EPOCH.*expects an int.*write 5"):
        cfg.merge_from_list(["OPTIM.MAX_EPOCH", "5.0"])


def test_unknown_key_suggests(cfg):
    with pytest.raises(ConfigError, match=r'Unknown config key "OPTIM\.LRR".*"OPTIM\.LR"'):
        cfg.merge_from_list(["OPTIM.LRR", "0.1"])
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        cfg.merge_from_list(["OPTIM.LR"])


def test_yacs_decoding_and_coercion(cfg):
    cfg.merge_from_list(["INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['random_flip']", "TRAINER.COOP.CTX_INIT", "a photo of a"])
    assert cfg.INPUT.SIZE == (32, 32)
    assert cfg.INPUT.TRANSFORMS == ("random_flip",)  # list -> tuple, as yacs
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a"


def test_merge_from_file(cfg, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("INPUT:\n  SIZE: (64, 64)\nOPTIM:\n  LR: 1e-5\n  NAME: sgd\n")
    cfg.merge_from_file(str(good))
    assert cfg.INPUT.SIZE == (64, 64) and cfg.OPTIM.LR == 1e-5 and cfg.OPTIM.NAME == "sgd"

    bad = tmp_path / "bad.yaml"
    bad.write_text("TRAINER:\n  COOP:\n    W: 8\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*TRAINER\.COOP\.W.*write 8\.0"):
        cfg.merge_from_file(str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("OPTIM:\n  MAX_EPOCHS: 3\n")
    with pytest.raises(ConfigError, match=r'unknown\.yaml.*"OPTIM\.MAX_EPOCHS".*"OPTIM\.MAX_EPOCH"'):
        cfg.merge_from_file(str(unknown))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        cfg.merge_from_file(str(tmp_path / "nope.yaml"))
