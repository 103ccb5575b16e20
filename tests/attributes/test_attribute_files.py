"""trainers.parts.attributes: loading, matching, finding and validating attribute files."""
import hashlib
import json

import pytest

from trainers.parts import attributes as A
from trainers.parts.attributes import (
    AttributeDataError,
    find_attribute_file,
    load_attribute_file,
    match_classes,
    normalize_classname,
    prompt_hashes,
    validate_attribute_file,
)

ATTRS = ["shape", "colour", "texture", "setting"]


def entry(name, id=None, attrs=ATTRS, sentence="A {name} has a clear {attr} in photos."):
    e = {"name": name, "descriptions": {a: [sentence.format(name=name, attr=a)] for a in attrs}}
    if id:
        e["id"] = id
    return e


def file_dict(names, ids=None):
    ids = ids or [None] * len(names)
    return {
        "dataset": "Toy", "domain": "toys",
        "attributes": [{"name": a, "definition": f"its {a}"} for a in ATTRS],
        "classes": [entry(n, i) for n, i in zip(names, ids)],
        "generator": {"procedure": "by hand", "model": "none", "date": "2025-01-01"},
    }


def write(tmp_path, data, name="toy.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def load(tmp_path, data):
    return load_attribute_file(write(tmp_path, data))


def test_module_does_not_import_torch():
    # Loaded from its file so that only this module's own imports count (the package
    # __init__ files of trainers/ import CLIP and torch on purpose).
    import subprocess
    import sys
    code = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('attrs', {A.__file__!r}); "
            "m = sys.modules['attrs'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print('torch' in sys.modules, 'clip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_load_roundtrip(tmp_path):
    data = file_dict(["red apple", "banana"])
    af = load(tmp_path, data)
    assert af.attribute_names == ATTRS
    assert [c.name for c in af.classes] == ["red apple", "banana"]
    assert af.to_dict() == data
    assert af.classes[1].sentences(["colour", "shape"]) == [["A banana has a clear colour in photos."],
                                                          ["A banana has a clear shape in photos."]]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("attributes"), '"attributes" must be a non-empty list'),
    (lambda d: d.update(classes={"banana": {}}), '"classes" must be a non-empty list'),
    (lambda d: d.update(clases=[]), "unknown top-level key(s) ['clases']"),
    (lambda d: d["attributes"].append({"name": "shape", "definition": "again"}), '"shape" is repeated'),
    (lambda d: d["classes"][0]["descriptions"].update(shape="not a list"), 'must be a list of strings'),
    (lambda d: d["classes"][1].update(id=7), "id must be a string"),
    (lambda d: d.update(domain=""), '"domain" must be a non-empty string'),
])
def test_load_schema_errors(tmp_path, mutate, message):
    data = file_dict(["red apple", "banana"])
    mutate(data)
    with pytest.raises(AttributeDataError, match="toy.json does not follow the attribute file format") as e:
        load(tmp_path, data)
    assert message in str(e.value)


def test_load_lists_all_schema_errors_and_bad_json(tmp_path):
    data = file_dict(["a"])
    data["dataset"] = 3
    data["classes"][0]["descriptions"] = []
    with pytest.raises(AttributeDataError) as e:
        load(tmp_path, data)
    assert '"dataset" must be' in str(e.value) and "descriptions must be an object" in str(e.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AttributeDataError, match="bad.json is not valid JSON"):
        load_attribute_file(tmp_path / "bad.json")
    with pytest.raises(AttributeDataError, match="attribute file not found"):
        load_attribute_file(tmp_path / "absent.json")


def test_normalize_classname():
    assert normalize_classname("  Great_White   Shark ") == "great white shark"
    assert normalize_classname("Apply_Eye_Makeup") == "apply eye makeup"


def test_match_in_label_order_and_by_normalised_name(tmp_path):
    af = load(tmp_path, file_dict(["banana", "Red Apple"]))
    matched = match_classes(af, ["red_apple", "BANANA"])
    assert [m.name for m in matched] == ["Red Apple", "banana"]


def test_match_repeated_names_by_position(tmp_path):
    data = file_dict(["missile", "cup", "missile"])
    data["classes"][0]["descriptions"]["shape"] = ["A missile on a launcher."]
    data["classes"][2]["descriptions"]["shape"] = ["A missile in flight."]
    af = load(tmp_path, data)
    matched = match_classes(af, ["missile", "cup", "missile"])
    assert matched[0].descriptions["shape"] == ["A missile on a launcher."]
    assert matched[2].descriptions["shape"] == ["A missile in flight."]
    with pytest.raises(AttributeDataError, match=r'2: "missile" \(occurrence 3; the file has 2\)'):
        match_classes(af, ["missile", "missile", "missile"])


def test_match_by_wnid(tmp_path):
    af = load(tmp_path, file_dict(["tench", "goldfish", "missile"], ["n01440764", "n01443537", "n03773504"]))
    matched = match_classes(af, ["missile", "goldfish"], wnids=["n03773504", "n01443537"])
    assert [m.id for m in matched] == ["n03773504", "n01443537"]
    with pytest.raises(AttributeDataError, match=r'0: "zebra" \(wnid n02391049\)'):
        match_classes(af, ["zebra"], wnids=["n02391049"])
    with pytest.raises(AttributeDataError, match="one wnid per class"):
        match_classes(af, ["tench", "goldfish"], wnids=["n01440764"])


def test_match_error_lists_every_problem_at_once(tmp_path):
    data = file_dict(["apple", "banana", "cherry"])
    del data["classes"][1]["descriptions"]["colour"]
    data["classes"][2]["descriptions"]["texture"] = ["  "]
    data["classes"][2]["descriptions"]["setting"] = []
    af = load(tmp_path, data)
    with pytest.raises(AttributeDataError) as e:
        match_classes(af, ["apple", "banana", "cherry", "durian", "elderberry"])
    msg = str(e.value)
    assert "(5 problem(s))" in msg
    for part in ['no entry for class 3: "durian"', 'no entry for class 4: "elderberry"',
                 'class 1 "banana": attribute "colour" is missing',
                 'class 2 "cherry": attribute "texture" has an empty sentence',
                 'class 2 "cherry": attribute "setting" has no sentence', "TRAINER.SEMPT.ATTRIBUTE_FILE"]:
        assert part in msg


@pytest.mark.parametrize("name, stem", [
    ("ImageNet", "imagenet"), ("ImageNetV2", "imagenet"), ("ImageNetSketch", "imagenet"),
    ("ImageNetA", "imagenet"), ("ImageNetR", "imagenet"), ("Caltech101", "caltech101"),
    ("OxfordPets", "oxford_pets"), ("StanfordCars", "stanford_cars"), ("OxfordFlowers", "oxford_flowers"),
    ("Food101", "food101"), ("FGVCAircraft", "fgvc_aircraft"), ("SUN397", "sun397"),
    ("DescribableTextures", "dtd"), ("EuroSAT", "eurosat"), ("UCF101", "ucf101"), ("Synthetic", "synthetic"),
])
def test_find_attribute_file_maps_dataset_names(tmp_path, name, stem):
    (tmp_path / f"{stem}.json").write_text("{}")
    assert find_attribute_file(name, root=tmp_path) == tmp_path / f"{stem}.json"


def test_find_attribute_file_errors(tmp_path):
    with pytest.raises(AttributeDataError, match=r"eurosat\.json .*does not exist.*TRAINER\.SEMPT\.ATTRIBUTE_FILE"):
        find_attribute_file("EuroSAT", root=tmp_path)
    with pytest.raises(AttributeDataError, match="no attribute file is known for DATASET.NAME 'MyData'"):
        find_attribute_file("MyData", root=tmp_path)
    with pytest.raises(AttributeDataError, match=r"TRAINER\.SEMPT\.ATTRIBUTE_FILE = '.*nope\.json': no such file"):
        find_attribute_file("EuroSAT", explicit_path=str(tmp_path / "nope.json"))
    mine = write(tmp_path, {}, "mine.json")
    assert find_attribute_file("MyData", explicit_path=str(mine)) == mine


def test_errors_name_the_callers_config_key(tmp_path):
    """Another trainer reading attribute files (DCLIP, CuPL) gets its own key in the fix."""
    key = "TRAINER.DCLIP.ATTRIBUTE_FILE"
    for call in (lambda: find_attribute_file("EuroSAT", root=tmp_path, config_key=key),
                 lambda: find_attribute_file("MyData", root=tmp_path, config_key=key),
                 lambda: find_attribute_file("EuroSAT", explicit_path="nope.json", config_key=key),
                 lambda: match_classes(load(tmp_path, file_dict(["apple"])), ["kiwi"], config_key=key)):
        with pytest.raises(AttributeDataError) as e:
            call()
        assert key in str(e.value) and "SEMPT" not in str(e.value)


def test_prompt_hashes_match_shipped_prompts():
    hashes = prompt_hashes()
    assert set(hashes) == {"step1_attributes.txt", "step2_descriptions.txt"}
    for name, digest in hashes.items():
        assert digest == hashlib.sha256((A.PROMPTS_DIR / name).read_bytes()).hexdigest()
    assert hashes["step1_attributes.txt"] != hashes["step2_descriptions.txt"]


# --------------------------------------------------------------------------- validation

NAMES = ["red apple", "banana", "cherry"]


def problems_after(tmp_path, mutate, classnames=NAMES, **kwargs):
    data = file_dict(NAMES)
    mutate(data)
    return validate_attribute_file(load(tmp_path, data), classnames, **kwargs)


def test_validate_clean_file_has_no_problems(tmp_path):
    assert problems_after(tmp_path, lambda d: None) == []
    assert problems_after(tmp_path, lambda d: None, classnames=None) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["classes"].pop(1), 'missing class 1: "banana"'),
    (lambda d: d["classes"][0]["descriptions"].pop("texture"), 'class "red apple": attribute "texture" is missing'),
    (lambda d: d["classes"][2]["descriptions"].update(shape=[""]), 'class "cherry": attribute "shape" has an empty sentence'),
    (lambda d: d["classes"][1]["descriptions"].update(shape=["A banana " + "very " * 30 + "curved."]),
     '"shape": 33 words (max 30)'),
    (lambda d: d["classes"][1]["descriptions"].update(shape=["A banana is " + "x-y-z " * 20]),
     "CLIP tokens (max 60)"),
    (lambda d: d["classes"][2]["descriptions"].update(colour=["A banana has a clear colour in photos."]),
     'the same sentence appears 2 times: "banana"/colour, "cherry"/colour'),
    (lambda d: d["classes"][0]["descriptions"].update(colour=["It is glossy red."]),
     '"colour": sentence does not name the class'),
    (lambda d: d["attributes"].pop(), "3 attributes; expected 4 to 8"),
    (lambda d: d["classes"].reverse(), 'classes are not in label order: position 0 holds "cherry"'),
    (lambda d: d["classes"].append(entry("durian")), 'entry "durian" matches no class of the list'),
    (lambda d: d["classes"][0]["descriptions"].update(smell=["A red apple smells sweet."]),
     '"smell" is not one of the attributes'),
    (lambda d: d["generator"].update(prompt_sha256={"step1_attributes.txt": "0", "step2_descriptions.txt": "0"}),
     "generator.prompt_sha256 differs from the shipped prompts"),
])
def test_validate_catches_each_defect(tmp_path, mutate, expected):
    problems = problems_after(tmp_path, mutate)
    assert any(expected in p for p in problems), problems


def test_validate_word_and_token_limits_are_parameters(tmp_path):
    def long(d):
        d["classes"][1]["descriptions"]["shape"] = ["A banana " + "very " * 12 + "curved."]
    assert problems_after(tmp_path, long) == []
    assert any("15 words (max 10)" in p for p in problems_after(tmp_path, long, max_words=10))
    assert any("CLIP tokens (max 5)" in p for p in problems_after(tmp_path, long, max_tokens=5))


def test_validate_recorded_current_prompt_hashes_pass(tmp_path):
    assert problems_after(tmp_path, lambda d: d["generator"].update(prompt_sha256=prompt_hashes())) == []


@pytest.mark.parametrize("classname, sentence, ok", [
    ("red apple", "Red Apples sit in a bowl.", True),
    ("red apple", "A red fruit, an apple.", False),
    ("apple", "A pineapple is spiky.", False),
    ("hard-leaved pocket orchid", "The hard leaved pocket orchid has mottled leaves.", True),
    ("colt's foot", "Colt's foot has yellow flower heads.", True),
    ("707-320", "The Boeing 707-320 has four engines under swept wings.", True),
    ("A330-200", "An Airbus A330 has two engines.", False),
    ("BAE 146-200", "The 146-200 has four engines on a high wing.", True),
    ("2012 Acura RL Sedan", "The Acura RL Sedan has a long low body.", True),
    ("2012 Acura RL Sedan", "This 2012 car is silver.", False),
    ("kite (bird of prey)", "A kite has a forked tail.", True),
    ("baluster / handrail", "A handrail runs along the stairs.", True),
    ("St. Bernard", "A St. Bernard is large with a white and red coat.", True),
])
def test_names_class(classname, sentence, ok):
    assert A.names_class(sentence, classname) is ok


def test_validate_wnid_list_against_ids(tmp_path):
    data = file_dict(["missile", "missile"], ["n03773504", "n04008634"])
    data["classes"][1]["descriptions"] = {a: [f"A missile shows its {a} on a ship."] for a in ATTRS}
    af = load(tmp_path, data)
    assert validate_attribute_file(af, ["missile", "missile"], wnids=["n03773504", "n04008634"]) == []
    problems = validate_attribute_file(af, ["missile", "missile"], wnids=["n03773504", "n09999999"])
    assert any('missing class 1: "missile" (wnid n09999999)' in p for p in problems)
