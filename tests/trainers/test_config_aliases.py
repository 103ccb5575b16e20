"""One declarative table of upstream key spellings (``CONFIG_ALIASES``, resolved by
``trainers.config.resolve_config_aliases`` into the trainer's own node) and the trainer seams
of issue 18 (learning-rate multipliers, the checkpoint-extras hook, the
``image_features_are_fixed`` error)."""
from __future__ import annotations

import pytest
import torch

import trainers
from dassl.engine import TRAINER_REGISTRY
from trainers.config import default_cfg, resolve_config_aliases

trainers.register_all()


def cfg_with(*opts):
    cfg = default_cfg()
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def trainer_class(name):
    return TRAINER_REGISTRY.get(name)


# ------------------------------------------------------------ the table
@pytest.mark.parametrize("trainer, own, alias", [
    ("KgCoOp", "W", "TRAINER.COOP.W"),
    ("TCP", "N_CTX", "TRAINER.COOP.N_CTX"),
    ("TCP", "W", "TRAINER.COOP.W"),
    ("ProGrad", "CSC", "TRAINER.COOP.CSC"),
    ("ProGrad", "LAMBDA", "LOSS.LAMBDA"),
    ("ProGrad", "T", "LOSS.T"),
    ("DePT", "CLASS_TOKEN_POSITION", "TRAINER.COOP.CLASS_TOKEN_POSITION"),
    ("SemPT", "MAPLE.PROMPT_DEPTH", "TRAINER.MAPLE.PROMPT_DEPTH"),
    ("SemPT", "PROMPTSRC.GPA_MEAN", "TRAINER.PROMPTSRC.GPA_MEAN"),
])
def test_each_method_declares_its_upstream_spellings(trainer, own, alias):
    assert trainer_class(trainer).CONFIG_ALIASES[own] == alias


def test_an_alias_that_is_set_is_written_into_the_own_node():
    cfg = cfg_with("TRAINER.COOP.N_CTX", 8, "LOSS.LAMBDA", 0.5)
    node = cfg.TRAINER.PROGRAD
    sources = resolve_config_aliases(cfg, "PROGRAD", trainer_class("ProGrad").CONFIG_ALIASES)
    assert cfg.TRAINER.PROGRAD is node and cfg.is_frozen()  # in place, still frozen
    assert (node.N_CTX, node.LAMBDA) == (8, 0.5)
    assert sources["N_CTX"] == "TRAINER.COOP.N_CTX" and sources["LAMBDA"] == "LOSS.LAMBDA"
    assert sources["T"] == "TRAINER.PROGRAD.T" and node.T == 1.0  # unset alias: the own key stays


def test_nested_own_keys():
    cfg = cfg_with("TRAINER.PROMPTSRC.GPA_MEAN", 3)
    resolve_config_aliases(cfg, "SEMPT", trainer_class("SemPT").CONFIG_ALIASES)
    assert cfg.TRAINER.SEMPT.PROMPTSRC.GPA_MEAN == 3
    assert cfg.TRAINER.SEMPT.MAPLE.PROMPT_DEPTH == 9  # MaPLe's default, unset in both spellings


def test_an_alias_equal_to_its_default_counts_as_unset():
    """yacs cannot tell a value written equal to the default from none: the own key wins."""
    cfg = cfg_with("TRAINER.COOP.N_CTX", 16, "TRAINER.TCP.N_CTX", 2)
    resolve_config_aliases(cfg, "TCP", trainer_class("TCP").CONFIG_ALIASES)
    assert cfg.TRAINER.TCP.N_CTX == 2


def test_both_spellings_set_to_the_same_value_agree():
    cfg = cfg_with("TRAINER.COOP.W", 2.0, "TRAINER.KGCOOP.W", 2.0)
    assert resolve_config_aliases(cfg, "KGCOOP", {"W": "TRAINER.COOP.W"})["W"] == "TRAINER.COOP.W"
    assert cfg.TRAINER.KGCOOP.W == 2.0


@pytest.mark.parametrize("node, opts, message", [
    ("KGCOOP", ("TRAINER.COOP.W", 2.0, "TRAINER.KGCOOP.W", 4.0), "TRAINER.COOP.W=2.0 and TRAINER.KGCOOP.W=4.0"),
    ("PROGRAD", ("LOSS.T", 2.0, "TRAINER.PROGRAD.T", 3.0), "LOSS.T=2.0 and TRAINER.PROGRAD.T=3.0"),
    ("TCP", ("TRAINER.COOP.CTX_INIT", "a photo", "TRAINER.TCP.CTX_INIT", "a picture"),
     "TRAINER.COOP.CTX_INIT='a photo' and TRAINER.TCP.CTX_INIT='a picture'"),
    ("SEMPT", ("TRAINER.MAPLE.PROMPT_DEPTH", 3, "TRAINER.SEMPT.MAPLE.PROMPT_DEPTH", 2),
     "TRAINER.MAPLE.PROMPT_DEPTH=3 and TRAINER.SEMPT.MAPLE.PROMPT_DEPTH=2"),
])
def test_conflicting_spellings_are_an_error_naming_both(node, opts, message):
    trainer = {"KGCOOP": "KgCoOp", "PROGRAD": "ProGrad", "TCP": "TCP", "SEMPT": "SemPT"}[node]
    with pytest.raises(ValueError, match="two spellings of one setting") as err:
        resolve_config_aliases(cfg_with(*opts), node, trainer_class(trainer).CONFIG_ALIASES)
    assert message in str(err.value)


def test_an_alias_table_naming_a_missing_own_key_is_refused():
    with pytest.raises(KeyError, match="TRAINER.COOP.NOPE"):
        resolve_config_aliases(cfg_with(), "COOP", {"NOPE": "LOSS.T"})


def test_an_alias_whose_node_is_not_defined_is_skipped():
    assert resolve_config_aliases(cfg_with(), "COOP", {"N_CTX": "TRAINER.NOT_A_NODE.N_CTX"}) == {
        "N_CTX": "TRAINER.COOP.N_CTX"}


# ------------------------------------------------------------ the image_features_are_fixed error
def test_prompts_under_a_frozen_feature_claim_name_the_attribute(tiny_clip):
    """A model that says its image features are fixed gets a feature server; a prompted call
    then cannot be served, and the error names the attribute to fix."""
    from trainers.common.image_encoder import ImageEncoder

    encoder = ImageEncoder(tiny_clip.visual)
    encoder.feature_server = object()  # attached: the model declared image_features_are_fixed True
    prompts = torch.zeros(2, encoder.width)
    with pytest.raises(RuntimeError, match="image_features_are_fixed False"):
        encoder(torch.zeros(1, 3, 32, 32), prompts=prompts)
    with pytest.raises(RuntimeError, match="image_features_are_fixed"):
        encoder(torch.zeros(1, 3, 32, 32), deep_prompts=[None, prompts])
