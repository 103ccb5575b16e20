"""DCLIP and CuPL: eval logits against plain re-implementations of upstream's formulas,
the difference between the two, the sentence cache, upstream description files, errors.

The references below use only the raw ``clip.model.CLIP`` (``encode_text`` on 77-token
sequences, ``encode_image``) in upstream's order of operations:
sachit-menon/classify_by_description_release ``main.py`` (per-description cosines, then
their mean) and sarahpratt/CuPL ``classify_imagenet.py`` (unit embeddings, mean, renormalised).
"""
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

import train
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from tests.utils.fabricate import make_eurosat_tree
from trainers.common.openai_clip import clip
from trainers.dclip import descriptor_clause
from trainers.parts.attributes import AttributeDataError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
NODES = {"DCLIP": "DCLIP", "CuPL": "CUPL"}
ATTRIBUTES = ["colour", "layout", "texture"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_eurosat_tree(tmp_path_factory.mktemp("data"), n_per_class=6)


def attribute_data(classnames, sentences_per_attr=2):
    """An attribute file: sentences of different lengths and wording per class and attribute."""
    return {
        "dataset": "EuroSAT", "domain": "satellite images",
        "attributes": [{"name": a, "definition": f"the {a}"} for a in ATTRIBUTES],
        "classes": [
            {"name": c, "descriptions": {
                a: [f"{c} seen from above shows {'a very ' * j}distinctive {a} number {i + k}." for j in range(sentences_per_attr)]
                for k, a in enumerate(ATTRIBUTES)}}
            for i, c in enumerate(classnames)
        ],
        "generator": {"procedure": "test fixture"},
    }


EUROSAT_CLASSES = [
    "Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Industrial Buildings",
    "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River", "Sea or Lake",
]


@pytest.fixture()
def attribute_file(tmp_path):
    path = tmp_path / "eurosat_attributes.json"
    path.write_text(json.dumps(attribute_data(EUROSAT_CLASSES)))
    return path


def build(name, data_root, clip_path, tmp_path, attribute_file, *opts, subsample="base"):
    args = train.build_parser().parse_args([
        "--root", data_root, "--seed", "1", "--trainer", name, "--output-dir", str(tmp_path / f"out_{name}"),
        "--dataset-config-file", osp.join(REPO, "configs/datasets/eurosat.yaml"),
        "--config-file", osp.join(REPO, f"configs/trainers/{name}/vit_b16.yaml"),
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TEST.BATCH_SIZE", "8", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", subsample,
        "DATASET.CACHE_DIR", str(tmp_path / "split_cache"),
        f"TRAINER.{NODES[name]}.ATTRIBUTE_FILE", str(attribute_file),
        f"TRAINER.{NODES[name]}.DESC_CACHE_DIR", str(tmp_path / "desc_cache"),
        *opts,
    ])
    train.register_components()
    cfg = train.setup_cfg(args)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def eval_images(trainer):
    return next(iter(trainer.test_loader))["img"]


def reference_logits(clip_model, images, class_sentences, method):
    """Upstream's formulas on the raw CLIP, times CLIP's logit scale."""
    image = clip_model.encode_image(images)
    image = image / image.norm(dim=-1, keepdim=True)
    scores = []
    for sentences in class_sentences:
        text = clip_model.encode_text(clip.tokenize(sentences))
        text = text / text.norm(dim=-1, keepdim=True)
        if method == "DCLIP":  # main.py: image_encodings @ v.T, then the mean over descriptions
            scores.append((image @ text.T).mean(dim=1))
        else:  # classify_imagenet.py: mean of unit embeddings, renormalised, then the dot product
            weight = text.mean(dim=0)
            weight = weight / weight.norm()
            scores.append(image @ weight)
    return clip_model.logit_scale.exp() * torch.stack(scores, dim=1)


def file_sentences(data, classnames):
    """All sentences of each class of an attribute file, attribute after attribute."""
    by_name = {c["name"]: c["descriptions"] for c in data["classes"]}
    return [[s for a in ATTRIBUTES for s in by_name[c][a]] for c in classnames]


@pytest.mark.parametrize("name", ["DCLIP", "CuPL"])
@pytest.mark.parametrize("subsample", ["base", "new"])
def test_eval_logits_equal_upstream_formulas(name, subsample, data_root, tiny_clip_path, tiny_clip, tmp_path, attribute_file):
    trainer = build(name, data_root, tiny_clip_path, tmp_path, attribute_file, subsample=subsample)
    classnames = trainer.dm.dataset.classnames
    images = eval_images(trainer)
    trainer.before_test()
    logits = trainer.model_inference(images)
    trainer.after_test()
    with torch.no_grad():
        expected = reference_logits(tiny_clip, images, file_sentences(json.loads(attribute_file.read_text()), classnames), name)
    assert logits.shape == (len(images), 5)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_nothing_trains_and_nothing_is_saved(data_root, tiny_clip_path, tmp_path, attribute_file):
    trainer = build("DCLIP", data_root, tiny_clip_path, tmp_path, attribute_file)
    assert trainer.trainable_modules() == {} and trainer.get_model_names() == []
    assert not any(p.requires_grad for p in trainer.model.parameters())


def test_a_class_with_diverse_descriptions_ranks_differently(data_root, tiny_clip_path, tmp_path):
    """DCLIP's unrenormalised mean is shorter for a class whose sentences disagree; CuPL's is not."""
    data = attribute_data(EUROSAT_CLASSES, sentences_per_attr=1)
    same = "Forest is a forest."
    data["classes"][1]["descriptions"] = {a: [same] for a in ATTRIBUTES}  # "Forest": one meaning only
    data["classes"][0]["descriptions"] = {  # "Annual Crop Land": three unrelated sentences
        "colour": ["Annual Crop Land is bright yellow and green in summer."],
        "layout": ["Annual Crop Land, seen from a satellite, is a grid of rectangles beside a village church."],
        "texture": ["Zebra stripes on a purple velvet carpet, 1987."],
    }
    path = tmp_path / "diverse.json"
    path.write_text(json.dumps(data))
    dclip = build("DCLIP", data_root, tiny_clip_path, tmp_path, path)
    cupl = build("CuPL", data_root, tiny_clip_path, tmp_path, path)
    w_dclip, w_cupl = dclip.model.text_features(), cupl.model.text_features()
    norms = w_dclip.norm(dim=-1)
    assert norms[1] == pytest.approx(1.0, abs=1e-6) and norms[0] < 0.99
    torch.testing.assert_close(F.normalize(w_dclip, dim=-1), w_cupl, atol=1e-6, rtol=0)  # same directions

    # Images between the two classes, a little nearer the diverse one: CuPL ranks it first, DCLIP
    # second. With f ~ (1 + d) u0 + u1, rho = <u0, u1> and m = |w_dclip[0]| < 1, CuPL's margin is
    # d (1 - rho) > 0 and DCLIP's is negative while d (m - rho) < (1 + rho)(1 - m).
    u0, u1 = w_cupl[0], w_cupl[1]
    rho, m = float(u0 @ u1), float(norms[0])
    bound = (1 + rho) * (1 - m) / max(m - rho, 1e-6)
    features = F.normalize(torch.stack([(1 + f * min(bound, 1.0)) * u0 + u1 for f in (0.1, 0.5, 0.9)]), dim=-1)
    cupl_logits = cupl.model.logits(features, w_cupl)
    dclip_logits = dclip.model.logits(features, w_dclip)
    assert (cupl_logits[:, 0] > cupl_logits[:, 1]).all()
    assert (dclip_logits[:, 0] < dclip_logits[:, 1]).all()


def test_sentences_are_encoded_once_then_read_from_the_cache(
    data_root, tiny_clip_path, tmp_path, attribute_file, count_text_encoder
):
    first = build("DCLIP", data_root, tiny_clip_path, tmp_path, attribute_file)
    assert sum(count_text_encoder) == 5 * len(ATTRIBUTES) * 2  # 5 base classes, 3 attributes x 2 sentences
    features = first.model.text_features().clone()
    first.test()
    assert sum(count_text_encoder) == 30  # evaluation encodes no text

    count_text_encoder.clear()
    cupl = build("CuPL", data_root, tiny_clip_path, tmp_path, attribute_file)  # same backbone: same cache
    again = build("DCLIP", data_root, tiny_clip_path, tmp_path, attribute_file)
    assert count_text_encoder == []
    torch.testing.assert_close(again.model.text_features(), features, atol=0, rtol=0)
    assert torch.allclose(cupl.model.text_features(), F.normalize(features, dim=-1), atol=1e-6)

    data = json.loads(attribute_file.read_text())
    data["classes"][0]["descriptions"]["colour"][0] = "Annual Crop Land is a patchwork of greens."
    attribute_file.write_text(json.dumps(data))
    build("DCLIP", data_root, tiny_clip_path, tmp_path, attribute_file)
    assert sum(count_text_encoder) == 1  # only the edited sentence


def test_train_without_eval_only_evaluates(data_root, tiny_clip_path, tmp_path, attribute_file):
    trainer = build("CuPL", data_root, tiny_clip_path, tmp_path, attribute_file)
    expected = trainer.test()
    trainer.train()
    assert trainer.evaluator.evaluate()["accuracy"] == expected
    images = eval_images(trainer)
    summary = trainer.forward_backward({"img": images, "label": torch.zeros(len(images), dtype=torch.long)})
    assert set(summary) == {"loss", "acc"}


@pytest.mark.parametrize("name", ["DCLIP", "CuPL"])
def test_fp16_weights_give_fp16_class_vectors(name, data_root, tiny_clip_path, tmp_path, attribute_file, count_text_encoder):
    """PREC fp16 as on a GPU (CLIP's fp16 weights, no autocast), simulated on the CPU: the
    sentences are encoded in fp16 under their own cache key and the logits follow fp32's."""
    from trainers.common.clip_loader import load_clip
    from trainers.common.precision import Precision

    trainer = build(name, data_root, tiny_clip_path, tmp_path, attribute_file)
    count_text_encoder.clear()
    trainer.precision = Precision("fp16", "fp16", "cpu", torch.float16, None)
    half_clip = load_clip(tiny_clip_path)  # fp16 matrices, as clip.build_model leaves them
    assert half_clip.dtype is torch.float16
    model = trainer.build_custom_model(trainer.cfg, trainer.dm.dataset.classnames, half_clip)
    assert sum(count_text_encoder) == 30  # not the fp32 cache entries
    images = eval_images(trainer)
    logits = model(images.half())
    assert model.text_features().dtype is torch.float16 and logits.dtype is torch.float16
    reference = trainer.model(images)
    torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.01)


# -- upstream description files -------------------------------------------------------

@pytest.mark.parametrize("descriptor, sentence", [
    ("a long neck", "which is a long neck"),
    ("an oval face", "which is an oval face"),
    ("used for cooking", "which is used for cooking"),
    ("has four legs", "which has four legs"),
    ("often found in water", "which often found in water"),
    ("can be red", "which can be red"),
    ("antennae", "which has antennae"),  # upstream: "which is antennae" (first-character test)
    ("almond-shaped eyes", "which has almond-shaped eyes"),
    ("candied fruit", "which has candied fruit"),  # upstream: "which candied fruit"
    ("", "which has "),
])
def test_descriptor_clause(descriptor, sentence):
    assert descriptor_clause(descriptor) == sentence


def upstream_file(tmp_path, classnames, descriptors):
    path = tmp_path / "descriptors_eurosat.json"
    path.write_text(json.dumps({c.lower().replace(" ", "_"): descriptors(c) for c in classnames}))
    return path


@pytest.mark.parametrize("name", ["DCLIP", "CuPL"])
def test_upstream_description_file(name, data_root, tiny_clip_path, tiny_clip, tmp_path):
    """DCLIP frames upstream descriptors as upstream does; CuPL uses upstream sentences as they are."""
    path = upstream_file(tmp_path, EUROSAT_CLASSES, lambda c: [f"green fields near {c}", "a river", "has roads"])
    trainer = build(name, data_root, tiny_clip_path, tmp_path, path, "TRAINER.DCLIP.AFTER_TEXT", ".")
    classnames = trainer.dm.dataset.classnames
    if name == "DCLIP":  # the file's spelling of the name, underscores as spaces, then the clause
        sentences = [[f"{c.lower()}, which has green fields near {c}.", f"{c.lower()}, which is a river.",
                      f"{c.lower()}, which has roads."] for c in classnames]
    else:
        sentences = [[f"green fields near {c}", "a river", "has roads"] for c in classnames]
    images = eval_images(trainer)
    trainer.before_test()
    with torch.no_grad():
        expected = reference_logits(tiny_clip, images, sentences, name)
    torch.testing.assert_close(trainer.model_inference(images), expected, atol=1e-5, rtol=0)


def test_empty_upstream_lists(data_root, tiny_clip_path, tmp_path):
    """DCLIP keeps upstream's one empty descriptor ("{class}, which has "); CuPL has nothing to average."""
    path = upstream_file(tmp_path, EUROSAT_CLASSES, lambda c: [] if c == "Forest" else ["a field"])
    dclip = build("DCLIP", data_root, tiny_clip_path, tmp_path, path)
    assert torch.isfinite(dclip.model.text_features()).all()
    with pytest.raises(AttributeDataError, match=r'no sentence for class\(es\) 1: "Forest".*TRAINER\.CUPL\.ATTRIBUTE_FILE'):
        build("CuPL", data_root, tiny_clip_path, tmp_path, path)


# -- errors ---------------------------------------------------------------------------

def test_a_missing_class_names_the_file_the_class_and_the_key(data_root, tiny_clip_path, tmp_path):
    data = attribute_data([c for c in EUROSAT_CLASSES if c != "Highway or Road"])
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AttributeDataError) as err:
        build("DCLIP", data_root, tiny_clip_path, tmp_path, path)
    message = str(err.value)
    assert str(path) in message and '"Highway or Road"' in message and "TRAINER.DCLIP.ATTRIBUTE_FILE" in message

    upstream = upstream_file(tmp_path, [c for c in EUROSAT_CLASSES if c != "Forest"], lambda c: ["a field"])
    with pytest.raises(AttributeDataError, match=r'(?s)descriptors_eurosat\.json has no descriptions for 1 .*"Forest".*TRAINER\.CUPL'):
        build("CuPL", data_root, tiny_clip_path, tmp_path, upstream)


def test_a_missing_or_unreadable_file_names_the_key(data_root, tiny_clip_path, tmp_path):
    with pytest.raises(AttributeDataError, match=r"TRAINER\.CUPL\.ATTRIBUTE_FILE = '.*nowhere\.json': no such file"):
        build("CuPL", data_root, tiny_clip_path, tmp_path, tmp_path / "nowhere.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(AttributeDataError, match=r"broken\.json \(TRAINER\.DCLIP\.ATTRIBUTE_FILE\) is not a readable JSON"):
        build("DCLIP", data_root, tiny_clip_path, tmp_path, broken)
    neither = tmp_path / "neither.json"
    neither.write_text(json.dumps({"Forest": "one string, not a list"}))
    with pytest.raises(AttributeDataError, match=r"(?s)neither\.json does not follow.*TRAINER\.DCLIP\.ATTRIBUTE_FILE takes"):
        build("DCLIP", data_root, tiny_clip_path, tmp_path, neither)


def test_a_dataset_without_an_attribute_file_names_the_fix(data_root, tiny_clip_path, tmp_path, monkeypatch):
    from trainers.parts import attributes

    monkeypatch.setattr(attributes, "ATTRIBUTE_DATA_ROOT", tmp_path / "no_attribute_data")
    with pytest.raises(AttributeDataError, match=r"eurosat\.json for dataset EuroSAT does not exist.*TRAINER\.DCLIP\.ATTRIBUTE_FILE"):
        build("DCLIP", data_root, tiny_clip_path, tmp_path, "")
