"""tools.generate_attributes against a scripted OpenAI-compatible server on 127.0.0.1.

The real ``openai`` client is used; time limits and back-off are made small through the
tool's own options.
"""
import json

import pytest

from tools import generate_attributes as G
from trainers.parts.attributes import load_attribute_file, prompt_hashes, validate_attribute_file

CLASSES = ["red apple", "banana", "cherry", "durian"]
ATTRIBUTES = ["shape", "colour", "texture", "setting"]  # what the fake server's step 1 answers
KEY_ENV = "SEMPT_TEST_LLM_KEY"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-secret")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return tmp_path


def run(workdir, url, *extra, out="out.json"):
    argv = ["--dataset", "fruit", "--domain", "fruit", "--classnames", str(workdir / "classes.txt"),
            "--model", "test-model", "--base-url", url, "--api-key-env", KEY_ENV,
            "--out", str(workdir / out), "--cache", str(workdir / "cache.jsonl"),
            "--timeout", "5", "--backoff", "0.01", "--max-retries", "2", *extra]
    return G.main(argv)


def cache_records(workdir):
    return [json.loads(line) for line in (workdir / "cache.jsonl").read_text().splitlines()]


def test_good_run_writes_a_valid_file(workdir, fake_llm, capsys):
    llm, url = fake_llm
    assert run(workdir, url) == 0
    af = load_attribute_file(workdir / "out.json")
    assert af.attribute_names == ATTRIBUTES
    assert [c.name for c in af.classes] == CLASSES
    assert validate_attribute_file(af, CLASSES) == []
    assert len(llm.requests) == 1 + len(CLASSES)
    assert {b["model"] for b in llm.requests} == {"test-model"}
    gen = af.generator
    assert gen["model"] == "test-model" and gen["base_url_host"] == "127.0.0.1"
    assert gen["prompt_sha256"] == prompt_hashes()
    assert gen["parameters"]["sentences"] == 1
    assert "sk-test-secret" not in (workdir / "out.json").read_text()
    assert "sk-test-secret" not in (workdir / "cache.jsonl").read_text()
    # The prompts sent are the shipped templates, filled in.
    step1 = llm.requests[0]["messages"][0]["content"]
    assert step1 == G.render_step1(G.load_prompt("step1_attributes.txt"), "fruit", "fruit", CLASSES, 4, 8)
    assert "- durian\n" in step1
    assert "OK (4 classes, 4 attributes)" in capsys.readouterr().out


def test_malformed_and_incomplete_answers_are_retried(workdir, fake_llm):
    llm, url = fake_llm
    missing_attr = json.dumps({a: ["A banana is here."] for a in ATTRIBUTES[:-1]})
    llm.script["banana"] = ["Sure! Here it is: {", "```json\n" + missing_attr + "\n```",
                            "```json\n" + llm.good_step2("banana") + "\n```"]
    llm.script["step1"] = [json.dumps({"attributes": [{"name": "shape", "definition": "x"}]})]
    assert run(workdir, url) == 0
    assert llm.count("banana") == 3 and llm.count("step1") == 2
    assert len(cache_records(workdir)) == 2 + len(CLASSES) + 2  # every raw answer is kept
    assert load_attribute_file(workdir / "out.json").classes[1].descriptions["setting"] == \
        ["A banana shows a distinctive setting in this photo."]


def test_rate_limit_and_dropped_connection_are_retried(workdir, fake_llm):
    llm, url = fake_llm
    llm.script["cherry"] = [llm.RATE_LIMIT, llm.DROP]
    assert run(workdir, url) == 0
    assert llm.count("cherry") == 3


def test_invalid_after_retries_is_reported_not_written_then_rerun_asks_only_that(workdir, fake_llm, capsys):
    llm, url = fake_llm
    llm.script["cherry"] = ['{"shape": ["A cherry is round."]}'] * 3
    assert run(workdir, url) == 1
    out = capsys.readouterr().out
    assert 'class 2 "cherry": no valid answer after 3 attempt(s)' in out and "NOT written" in out
    assert not (workdir / "out.json").exists()
    assert llm.count("cherry") == 3  # --max-retries 2: three requests, no more

    before = len(llm.requests)
    assert run(workdir, url) == 0  # the bad answers are replayed from the cache, then one new request
    assert [llm.key_of(b["messages"][0]["content"]) for b in llm.requests[before:]] == ["cherry"]


def test_resume_after_interruption_then_replay_without_server(workdir, fake_llm, free_url, capsys, monkeypatch):
    llm, url = fake_llm
    llm.script["cherry"] = [llm.DROP] * 3  # the endpoint "goes away" at the third class
    assert run(workdir, url) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert not (workdir / "out.json").exists()
    assert [llm.key_of(b["messages"][0]["content"]) for b in llm.requests] == \
        ["step1", "red apple", "banana", "cherry", "cherry", "cherry"]

    before = len(llm.requests)
    assert run(workdir, url) == 0
    assert [llm.key_of(b["messages"][0]["content"]) for b in llm.requests[before:]] == ["cherry", "durian"]
    first = json.loads((workdir / "out.json").read_text())

    # A rerun is reproducible from the cache alone: no server, and no key needed.
    monkeypatch.delenv(KEY_ENV)
    assert run(workdir, free_url, "--force") == 0
    assert json.loads((workdir / "out.json").read_text()) == first
    assert "0 request(s) sent, 5 answer(s) replayed" in capsys.readouterr().out


def test_cache_survives_a_line_cut_short(workdir, fake_llm):
    llm, url = fake_llm
    llm.script["cherry"] = [llm.DROP] * 3
    run(workdir, url)
    with open(workdir / "cache.jsonl", "a") as f:
        f.write('{"key": "abc", "cont')  # killed mid-write
    before = len(llm.requests)
    assert run(workdir, url) == 0
    assert len(llm.requests) - before == 2
    assert all(isinstance(r, dict) for r in map(json.loads, (workdir / "cache.jsonl").read_text().splitlines()[-2:]))


def test_rate_limit_exhausted_gives_a_clear_message(workdir, fake_llm, capsys):
    llm, url = fake_llm
    llm.script["step1"] = [llm.RATE_LIMIT] * 5
    assert run(workdir, url, "--max-retries", "1") == 1
    err = capsys.readouterr().err
    assert "rate limited" in err and "HTTP 429" in err and "rerun the same command" in err
    assert llm.count("step1") == 2


def test_step1_invalid_after_retries_stops_the_run(workdir, fake_llm, capsys):
    llm, url = fake_llm
    llm.script["step1"] = ['{"attributes": []}'] * 3
    assert run(workdir, url) == 1
    assert "step 1 (attributes): no valid answer after 3 attempt(s)" in capsys.readouterr().err
    assert len(llm.requests) == 3 and not (workdir / "out.json").exists()


def test_wrong_route_is_reported_as_not_found(workdir, fake_llm, capsys):
    llm, url = fake_llm
    assert run(workdir, url.removesuffix("/v1")) == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "--base-url" in err


def test_missing_key(workdir, fake_llm, capsys, monkeypatch):
    llm, url = fake_llm
    monkeypatch.delenv(KEY_ENV)
    assert run(workdir, url) == 1
    assert f"the environment variable {KEY_ENV} is not set" in capsys.readouterr().err
    assert llm.requests == []


def test_unreachable_endpoint(workdir, free_url, capsys):
    assert run(workdir, free_url, "--max-retries", "1") == 1
    err = capsys.readouterr().err
    assert "cannot reach" in err and "--base-url" in err


def test_existing_output_is_not_overwritten(workdir, fake_llm, capsys):
    llm, url = fake_llm
    (workdir / "out.json").write_text("precious")
    assert run(workdir, url) == 1
    assert "--force" in capsys.readouterr().err
    assert (workdir / "out.json").read_text() == "precious" and llm.requests == []


def test_extend_asks_only_for_missing_classes(workdir, fake_llm):
    llm, url = fake_llm
    base = {"dataset": "fruit", "domain": "fruit",
            "attributes": [{"name": a, "definition": "given"} for a in ["size", "hue", "skin", "stem"]],
            "classes": [{"name": n, "descriptions": {a: [f"A {n} has its own {a}."] for a in
                                                     ["size", "hue", "skin", "stem"]}}
                        for n in ["banana", "red apple"]],
            "generator": {"model": "earlier"}}
    (workdir / "out.json").write_text(json.dumps(base))
    llm.script.update({n: [llm.good_step2(n, ["size", "hue", "skin", "stem"])] for n in ["cherry", "durian"]})
    assert run(workdir, url, "--extend", str(workdir / "out.json")) == 0
    assert sorted(llm.key_of(b["messages"][0]["content"]) for b in llm.requests) == ["cherry", "durian"]
    af = load_attribute_file(workdir / "out.json")
    assert [c.name for c in af.classes] == CLASSES  # label order of the class list
    assert af.classes[1].descriptions["hue"] == ["A banana has its own hue."]
    assert af.generator["extended_from"] == {"model": "earlier"}


# --------------------------------------------------------------------------- parsing, prompts, --check

@pytest.mark.parametrize("text, value", [
    ('{"a": 1}', {"a": 1}),
    ('  ```json\n{"a": 1}\n```\n', {"a": 1}),
    ('```\n{"a": 1}\n```', {"a": 1}),
    ('<think>hmm {"b": 2}</think>\n{"a": 1}', {"a": 1}),
])
def test_parse_json_answer_tolerates_only_a_fence(text, value):
    assert G.parse_json_answer(text) == value


@pytest.mark.parametrize("text", ["", "Here you go: {\"a\": 1}", '```json\n{"a": 1}\n```\nHope this helps!',
                                  '{"a": 1} {"b": 2}', "{'a': 1}"])
def test_parse_json_answer_rejects_other_text(text):
    with pytest.raises(G.AnswerError):
        G.parse_json_answer(text)


def test_step2_prompt_shows_the_exact_answer_shape():
    attrs = [G.Attribute(a, f"its {a}") for a in ATTRIBUTES]
    for j in (1, 3):
        prompt = G.render_step2(G.load_prompt("step2_descriptions.txt"), "Fruit", "fruit", attrs, "banana", j, 30)
        skeleton = json.loads(prompt[prompt.rindex("\n{") + 1:])
        assert list(skeleton) == ATTRIBUTES and all(len(v) == j for v in skeleton.values())
        assert "- texture: its texture" in prompt and '"banana"' in prompt and "{" not in prompt[:prompt.rindex("\n{")]


def test_check_step2_rejects_unnamed_and_long_sentences():
    attrs = [G.Attribute(a, "") for a in ATTRIBUTES]
    good = {a: [f"A banana shows its {a}."] for a in ATTRIBUTES}
    assert G.check_step2(good, attrs, "banana", 1, 30, 60) == good
    with pytest.raises(G.AnswerError, match="does not name the class"):
        G.check_step2(dict(good, shape=["It is curved."]), attrs, "banana", 1, 30, 60)
    with pytest.raises(G.AnswerError, match="words"):
        G.check_step2(dict(good, shape=["A banana " + "so " * 40]), attrs, "banana", 1, 30, 60)
    with pytest.raises(G.AnswerError, match="list of 2 string"):
        G.check_step2(good, attrs, "banana", 2, 30, 60)


def _check(path, *extra):
    return G.main(["--check", str(path), "--dataset", "fruit", *extra])


def test_check_mode(workdir, fake_llm, capsys):
    llm, url = fake_llm
    assert run(workdir, url) == 0
    capsys.readouterr()
    classes = ["--classnames", str(workdir / "classes.txt")]
    assert _check(workdir / "out.json", *classes) == 0
    assert "OK (4 classes, 4 attributes)" in capsys.readouterr().out

    data = json.loads((workdir / "out.json").read_text())
    data["classes"].pop()                                           # missing class
    del data["classes"][0]["descriptions"]["colour"]                # missing attribute
    data["classes"][1]["descriptions"]["shape"] = [""]              # empty sentence
    data["classes"][1]["descriptions"]["texture"] = ["A banana " + "long " * 40]  # too long
    data["classes"][2]["descriptions"]["colour"] = data["classes"][1]["descriptions"]["colour"]  # duplicate
    data["classes"][2]["descriptions"]["setting"] = ["It sits on a table."]  # class not named
    (workdir / "bad.json").write_text(json.dumps(data))
    assert _check(workdir / "bad.json", *classes) == 1
    out = capsys.readouterr().out
    for expected in ['missing class 3: "durian"', 'attribute "colour" is missing', 'has an empty sentence',
                     "42 words (max 30)", "the same sentence appears 2 times", "does not name the class"]:
        assert expected in out, expected


def test_check_unknown_dataset_and_bad_file(workdir, capsys):
    assert _check(workdir / "x.json") == 1
    assert "unknown dataset 'fruit'" in capsys.readouterr().err
    (workdir / "x.json").write_text("[]")
    assert _check(workdir / "x.json", "--classnames", str(workdir / "classes.txt")) == 1
    assert "top level must be a JSON object" in capsys.readouterr().err


# --------------------------------------------------------------------------- shipped class lists

@pytest.mark.parametrize("dataset, n", [
    ("caltech101", 100), ("dtd", 47), ("eurosat", 10), ("fgvc_aircraft", 100), ("food101", 101),
    ("imagenet", 1000), ("oxford_flowers", 102), ("oxford_pets", 37), ("stanford_cars", 196),
    ("sun397", 397), ("ucf101", 101),
])
def test_shipped_class_lists(dataset, n):
    classes = G.read_classnames(G.CLASSNAMES_DIR / f"{dataset}.txt")
    assert len(classes) == n
    assert all(c.id for c in classes) == (dataset == "imagenet")
    assert dataset in G.DATASETS


def test_imagenet_variant_wnids_are_imagenet_classes():
    wnids = {c.id for c in G.read_classnames(G.CLASSNAMES_DIR / "imagenet.txt")}
    for variant in ("imagenet_a_wnids.txt", "imagenet_r_wnids.txt"):
        subset = (G.CLASSNAMES_DIR / variant).read_text().split()
        assert len(subset) == 200 and set(subset) <= wnids


def test_class_list_with_mixed_wnids_is_rejected(tmp_path):
    (tmp_path / "c.txt").write_text("n01440764 tench\ngoldfish\n")
    with pytest.raises(G.GenerationError, match="every line starts with a wnid or none"):
        G.read_classnames(tmp_path / "c.txt")
