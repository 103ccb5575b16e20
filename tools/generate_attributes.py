"""Generate (or check) a dataset's attribute file with an LLM, by the two shipped prompts.

    python -m tools.generate_attributes --dataset caltech101 --model M [--base-url URL]
    python -m tools.generate_attributes --check attribute_data/caltech101.json --dataset caltech101

Step 1 (once per dataset, ``attribute_data/prompts/step1_attributes.txt``) asks for the K
visual attributes the classes share; step 2 (once per class, ``step2_descriptions.txt``)
asks for the class's sentences along them. Requests go through the ``openai`` client to any
OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ...).

Answers must be a JSON object and nothing else; the one tolerance is a single surrounding
Markdown code fence (```json ... ```) and a leading ``<think>...</think>`` block, which many
chat and reasoning models add despite the instruction. Invalid answers are re-asked with
exponential back-off up to ``--max-retries`` times, then reported; the output file is only
written when every class has a valid answer. Every raw request and response is appended to a
JSONL cache keyed by the exact request, so an interrupted run resumes where it stopped and a
rerun replays the same answers (see attribute_data/README.md).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar
from urllib.parse import urlsplit

from trainers.parts.attributes import (
    ATTRIBUTE_DATA_ROOT,
    MAX_ATTRIBUTES,
    MIN_ATTRIBUTES,
    PROMPTS_DIR,
    REPO_ROOT,
    Attribute,
    AttributeDataError,
    AttributeFile,
    ClassEntry,
    assign_classes,
    load_attribute_file,
    prompt_hashes,
    validate_attribute_file,
    validate_class_descriptions,
)

T = TypeVar("T")

CLASSNAMES_DIR = ATTRIBUTE_DATA_ROOT / "classnames"
DEFAULT_CACHE_DIR = REPO_ROOT / "output" / "attribute_cache"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class DatasetInfo:
    title: str  # the dataset's DATASET.NAME, used in the prompts and the file's "dataset"
    domain: str  # "photos of {domain}" in the prompts


DATASETS = {
    "caltech101": DatasetInfo("Caltech101", "everyday objects, animals and scenes"),
    "dtd": DatasetInfo("DescribableTextures", "surface textures"),
    "eurosat": DatasetInfo("EuroSAT", "Sentinel-2 satellite images of land use and land cover"),
    "fgvc_aircraft": DatasetInfo("FGVCAircraft", "aircraft models and variants"),
    "food101": DatasetInfo("Food101", "dishes and foods"),
    "imagenet": DatasetInfo("ImageNet", "objects, animals, plants, scenes and artefacts"),
    "oxford_flowers": DatasetInfo("OxfordFlowers", "flower species"),
    "oxford_pets": DatasetInfo("OxfordPets", "cat and dog breeds"),
    "stanford_cars": DatasetInfo("StanfordCars", "car models by make, model and year"),
    "sun397": DatasetInfo("SUN397", "scene categories"),
    "ucf101": DatasetInfo("UCF101", "people performing actions (video frames)"),
}


class AnswerError(ValueError):
    """One LLM answer is malformed or incomplete (it will be re-asked)."""


class GenerationError(RuntimeError):
    """The run cannot go on: no valid answer after the retries, or the endpoint refuses."""


# --------------------------------------------------------------------------- class lists

@dataclass(frozen=True)
class ClassSpec:
    name: str
    id: Optional[str] = None  # WordNet id, for ImageNet


_WNID_LINE = re.compile(r"^(n\d{8})\s+(\S.*)$")


def read_classnames(path: str | Path) -> list[ClassSpec]:
    """One class per line, in label order; ``<wnid> <name>`` lines (ImageNet) carry the wnid."""
    path = Path(path)
    if not path.is_file():
        raise GenerationError(f"class list {path} not found; pass --classnames FILE (one class per line)")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise GenerationError(f"class list {path} is empty")
    matches = [_WNID_LINE.match(line) for line in lines]
    if any(matches):
        if not all(matches):
            bad = next(line for line, m in zip(lines, matches) if not m)
            raise GenerationError(f"{path}: either every line starts with a wnid or none; "
                                  f"this one does not: {bad!r}")
        return [ClassSpec(m.group(2), m.group(1)) for m in matches]
    return [ClassSpec(line) for line in lines]


# --------------------------------------------------------------------------- prompts

def load_prompt(name: str) -> str:
    return (PROMPTS_DIR / name).read_text(encoding="utf-8")


def render_step1(template: str, dataset: str, domain: str, classnames: Sequence[str],
                 min_attributes: int, max_attributes: int) -> str:
    return template.format(dataset=dataset, domain=domain, num_classes=len(classnames),
                           classnames="\n".join(f"- {c}" for c in classnames),
                           min_attributes=min_attributes, max_attributes=max_attributes)


def render_step2(template: str, dataset: str, domain: str, attributes: Sequence[Attribute],
                 classname: str, num_sentences: int, max_words: int) -> str:
    if num_sentences == 1:
        slot = '["<sentence>"]'
    else:
        slot = "[" + ", ".join(f'"<sentence {j + 1}>"' for j in range(num_sentences)) + "]"
    return template.format(dataset=dataset, domain=domain,
                           attributes="\n".join(f"- {a.name}: {a.definition}" for a in attributes),
                           classname=classname, num_sentences=num_sentences, max_words=max_words,
                           attribute_keys=", ".join(f'"{a.name}": {slot}' for a in attributes))


# --------------------------------------------------------------------------- answers

_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?[ \t]*\n(.*?)\n?```$", re.DOTALL)


def parse_json_answer(text: Optional[str]) -> Any:
    """The JSON value of an answer: the whole text, or one fenced block that is the whole text."""
    if not text or not text.strip():
        raise AnswerError("empty answer")
    body = _THINK.sub("", text).strip()
    fence = _FENCE.match(body)
    if fence:
        body = fence.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise AnswerError(f"not JSON ({e}): {text[:200]!r}") from None


def check_step1(answer: Any, min_attributes: int, max_attributes: int) -> list[Attribute]:
    if not isinstance(answer, dict) or set(answer) != {"attributes"} or not isinstance(answer["attributes"], list):
        raise AnswerError('expected {"attributes": [...]} and nothing else')
    attributes, seen = [], set()
    for i, a in enumerate(answer["attributes"]):
        if not isinstance(a, dict) or set(a) != {"name", "definition"}:
            raise AnswerError(f'attribute {i} must have exactly "name" and "definition"')
        name, definition = a["name"], a["definition"]
        if not isinstance(name, str) or not name.strip() or not isinstance(definition, str) \
                or not definition.strip():
            raise AnswerError(f"attribute {i}: name and definition must be non-empty strings")
        if name.strip().lower() in seen:
            raise AnswerError(f'attribute "{name}" is repeated')
        seen.add(name.strip().lower())
        attributes.append(Attribute(name.strip(), definition.strip()))
    if not min_attributes <= len(attributes) <= max_attributes:
        raise AnswerError(f"{len(attributes)} attributes; asked for {min_attributes} to {max_attributes}")
    return attributes


def check_step2(answer: Any, attributes: Sequence[Attribute], classname: str, num_sentences: int,
                max_words: int, max_tokens: int) -> dict[str, list[str]]:
    names = [a.name for a in attributes]
    if not isinstance(answer, dict):
        raise AnswerError("expected a JSON object keyed by attribute name")
    missing = [n for n in names if n not in answer]
    extra = [k for k in answer if k not in names]
    if missing or extra:
        raise AnswerError(f"attribute keys differ: missing {missing}, unexpected {extra}")
    descriptions = {}
    for n in names:
        value = answer[n]
        if not isinstance(value, list) or len(value) != num_sentences \
                or not all(isinstance(s, str) for s in value):
            raise AnswerError(f'"{n}" must be a list of {num_sentences} string(s)')
        descriptions[n] = [" ".join(s.split()) for s in value]
    problems = validate_class_descriptions(descriptions, names, classname, max_words, max_tokens)
    if problems:
        raise AnswerError("; ".join(problems))
    return descriptions


# --------------------------------------------------------------------------- cache

def request_key(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False,
                                     separators=(",", ":")).encode("utf-8")).hexdigest()


class ResponseCache:
    """Append-only JSONL of raw requests and responses, replayed in order per request.

    The n-th answer ever received for a request is replayed as its n-th attempt, so a rerun
    retraces the same retries and reaches the same result without asking again.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._answers: dict[str, list[str]] = {}
        self.skipped_lines = 0
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self._answers.setdefault(record["key"], []).append(record["content"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.skipped_lines += 1  # a line cut short by an interrupted write

    def get(self, key: str, attempt: int) -> Optional[str]:
        answers = self._answers.get(key, [])
        return answers[attempt] if attempt < len(answers) else None

    def add(self, key: str, request: dict[str, Any], response: dict[str, Any], content: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        answers = self._answers.setdefault(key, [])
        record = {"key": key, "attempt": len(answers), "time": datetime.datetime.now().isoformat(timespec="seconds"),
                  "request": request, "response": response, "content": content}
        with self.path.open("a+", encoding="utf-8") as f:
            # Start on a fresh line if an earlier write was cut short.
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    f.write("\n")
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        answers.append(content)


# --------------------------------------------------------------------------- LLM client

class LLM:
    """Asks one prompt at a time, through the cache, with bounded retries and back-off."""

    def __init__(self, model: str, base_url: str, api_key_env: str, cache: ResponseCache,
                 temperature: float = 0.2, timeout: float = 120.0, max_retries: int = 4,
                 backoff: float = 2.0, max_backoff: float = 60.0):
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.cache, self.temperature, self.timeout = cache, temperature, timeout
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.sent = 0  # requests sent to the endpoint in this run
        self.replayed = 0  # answers taken from the cache
        self._client = None

    def _wait(self, retry: int, at_least: float = 0.0) -> None:
        time.sleep(min(self.max_backoff, max(at_least, self.backoff * 2 ** retry)))

    def client(self):
        # Created on first use, so a rerun served entirely from the cache needs no key.
        if self._client is None:
            import openai
            key = os.environ.get(self.api_key_env, "")
            if not key:
                raise GenerationError(
                    f"no API key: the environment variable {self.api_key_env} is not set. Export it "
                    f"(or name another variable with --api-key-env); servers without keys such as "
                    f"vLLM or Ollama accept any value, e.g. {self.api_key_env}=none")
            # Retries are ours (max_retries=0 in the client) so that they are bounded, backed
            # off and reported in one place.
            self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout,
                                         max_retries=0)
        return self._client

    def _send(self, request: dict[str, Any], key: str) -> str:
        import openai
        client = self.client()
        failure, retry_after = "", 0.0
        for retry in range(self.max_retries + 1):
            if retry:
                self._wait(retry - 1, at_least=retry_after)
            retry_after = 0.0
            try:
                completion = client.chat.completions.create(**request)
            except openai.RateLimitError as e:
                header = e.response.headers.get("retry-after", "")
                retry_after = float(header) if re.fullmatch(r"\d+(\.\d+)?", header) else 0.0
                failure = (f"rate limited by {self.base_url} (HTTP 429) {self.max_retries + 1} times; wait, "
                           f"then rerun the same command (the cache keeps every answer so far)")
                continue
            except openai.APIConnectionError as e:  # includes timeouts and dropped connections
                failure = (f"cannot reach {self.base_url} ({type(e).__name__}: {e}); check --base-url "
                           f"(it usually ends in /v1) and that the server is running")
                continue
            except openai.InternalServerError as e:
                failure = f"{self.base_url} keeps failing (HTTP {e.status_code}): {e.message}"
                continue
            except openai.AuthenticationError:
                raise GenerationError(f"{self.base_url} rejected the API key in ${self.api_key_env} "
                                      f"(HTTP 401); check the key") from None
            except openai.NotFoundError as e:
                raise GenerationError(f"{self.base_url}: not found (HTTP 404: {e.message}); check "
                                      f"--model {self.model!r} and --base-url") from None
            except openai.APIStatusError as e:
                raise GenerationError(f"{self.base_url} refused the request (HTTP {e.status_code}): "
                                      f"{e.message}") from None
            self.sent += 1
            choices = completion.choices or []
            content = (choices[0].message.content if choices else None) or ""
            self.cache.add(key, request, completion.model_dump(mode="json"), content)
            return content
        raise GenerationError(failure)

    def ask(self, prompt: str, check: Callable[[str], T], what: str) -> T:
        """The checked answer to ``prompt``; cached answers first, then at most
        ``max_retries + 1`` new requests, re-asking (with back-off) while answers are invalid."""
        request = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                   "temperature": self.temperature}
        key = request_key(request)
        errors: list[str] = []
        attempt = sent = 0
        while True:
            content = self.cache.get(key, attempt)
            if content is None:
                if sent > self.max_retries:
                    raise AnswerError(f"{what}: no valid answer after {attempt} attempt(s); last: {errors[-1]}")
                if sent:
                    self._wait(sent - 1)
                content = self._send(request, key)
                sent += 1
            else:
                self.replayed += 1
            try:
                return check(content)
            except AnswerError as e:
                errors.append(str(e))
            attempt += 1


# --------------------------------------------------------------------------- the run

def _host(base_url: str) -> str:
    return urlsplit(base_url).hostname or base_url  # hostname drops any user:password@


def _dataset_info(args: argparse.Namespace) -> tuple[DatasetInfo, list[ClassSpec]]:
    known = DATASETS.get(args.dataset)
    if known is None and not (args.classnames and (args.domain or args.check)):
        raise GenerationError(f"unknown dataset {args.dataset!r} (known: {', '.join(DATASETS)}); for a "
                              f"new dataset pass --classnames FILE and --domain TEXT")
    info = known or DatasetInfo(args.dataset, args.domain or "")
    if args.domain:
        info = DatasetInfo(info.title, args.domain)
    classes = read_classnames(args.classnames or CLASSNAMES_DIR / f"{args.dataset}.txt")
    return info, classes


def _report(problems: list[str], path: Path, n_classes: int, k: int) -> None:
    if problems:
        print(f"{path}: {len(problems)} problem(s):")
        for p in problems:
            print(f"  - {p}")
    else:
        print(f"{path}: OK ({n_classes} classes, {k} attributes)")


def run_check(args: argparse.Namespace) -> int:
    _, classes = _dataset_info(args)
    attr_file = load_attribute_file(args.check)
    wnids = [c.id for c in classes] if all(c.id for c in classes) else None
    problems = validate_attribute_file(attr_file, [c.name for c in classes], args.max_words, args.max_tokens,
                                       wnids=wnids, min_attributes=args.min_attributes,
                                       max_attributes=args.max_attributes)
    _report(problems, Path(args.check), len(classes), len(attr_file.attributes))
    return 1 if problems else 0


def run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    info, classes = _dataset_info(args)
    out = Path(args.out or ATTRIBUTE_DATA_ROOT / f"{args.dataset}.json")
    base = load_attribute_file(args.extend) if args.extend else None
    same_as_base = base is not None and out.resolve() == Path(args.extend).resolve()
    if out.exists() and not (args.force or same_as_base):
        raise GenerationError(f"{out} exists; pass --force to replace it, --out to write elsewhere, "
                              f"or --extend {out} to add only what it lacks")
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    cache = ResponseCache(args.cache or DEFAULT_CACHE_DIR / f"{args.dataset}.jsonl")
    if cache.skipped_lines:
        print(f"note: skipped {cache.skipped_lines} unreadable line(s) of {cache.path}", file=sys.stderr)
    llm = LLM(args.model, base_url, args.api_key_env, cache, temperature=args.temperature,
              timeout=args.timeout, max_retries=args.max_retries, backoff=args.backoff)
    names = [c.name for c in classes]
    wnids = [c.id for c in classes] if all(c.id for c in classes) else None

    done: dict[int, dict[str, list[str]]] = {}
    if base is not None:
        attributes = base.attributes
        info = DatasetInfo(info.title, args.domain or base.domain)
        # Classes the file already covers completely are kept; the rest are asked.
        for i, entry in enumerate(assign_classes(base, names, wnids)):
            if entry is not None and not validate_class_descriptions(
                    entry.descriptions, base.attribute_names, names[i], args.max_words, args.max_tokens):
                done[i] = entry.descriptions
    else:
        try:
            attributes = llm.ask(
                render_step1(load_prompt("step1_attributes.txt"), info.title, info.domain, names,
                             args.min_attributes, args.max_attributes),
                lambda text: check_step1(parse_json_answer(text), args.min_attributes, args.max_attributes),
                "step 1 (attributes)")
        except AnswerError as e:  # without attributes no class can be asked
            raise GenerationError(f"{e}; rerun to ask again (answers so far are in {cache.path})") from None

    step2 = load_prompt("step2_descriptions.txt")
    failures = []
    for i, cls in enumerate(tqdm(classes, desc=f"{args.dataset} step 2", unit="class")):
        if i in done:
            continue
        try:
            done[i] = llm.ask(
                render_step2(step2, info.title, info.domain, attributes, cls.name, args.sentences, args.max_words),
                lambda text, name=cls.name: check_step2(parse_json_answer(text), attributes, name,
                                                        args.sentences, args.max_words, args.max_tokens),
                f'class {i} "{cls.name}"')
        except AnswerError as e:
            failures.append(str(e))
    print(f"{llm.sent} request(s) sent, {llm.replayed} answer(s) replayed from {cache.path}")
    if failures:
        print(f"{len(failures)} class(es) without a valid answer; {out} NOT written. Rerun the same "
              f"command to re-ask only these (the answers so far are in {cache.path}):")
        for f in failures:
            print(f"  - {f}")
        return 1

    generator = {
        "procedure": "two-step prompting, attribute_data/prompts/ (python -m tools.generate_attributes)",
        "model": args.model,
        "base_url_host": _host(base_url),
        "date": datetime.date.today().isoformat(),
        "prompt_sha256": prompt_hashes(),
        "parameters": {"min_attributes": args.min_attributes, "max_attributes": args.max_attributes,
                       "sentences": args.sentences, "max_words": args.max_words,
                       "temperature": args.temperature},
    }
    if base is not None:
        generator["extended_from"] = base.generator
    attr_file = AttributeFile(
        dataset=info.title, domain=info.domain, attributes=list(attributes),
        classes=[ClassEntry(c.name, done[i], c.id) for i, c in enumerate(classes)], generator=generator)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(attr_file.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)  # never leaves a half-written file behind
    print(f"wrote {out}")
    problems = validate_attribute_file(attr_file, names, args.max_words, args.max_tokens, wnids=wnids,
                                       min_attributes=args.min_attributes, max_attributes=args.max_attributes)
    _report(problems, out, len(classes), len(attributes))
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.generate_attributes", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, help=f"config name ({', '.join(DATASETS)}) or a new name")
    p.add_argument("--check", metavar="FILE", help="only validate FILE against the dataset's class list")
    p.add_argument("--model", help="model name at the endpoint (required to generate)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM), "
                   "http://localhost:11434/v1 (Ollama); default $OPENAI_BASE_URL or " + DEFAULT_BASE_URL)
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    p.add_argument("--classnames", metavar="FILE", help="class list, one per line in label order "
                   "(default attribute_data/classnames/<dataset>.txt)")
    p.add_argument("--domain", help="what the photos show, as in 'photos of DOMAIN' (default per dataset)")
    p.add_argument("--out", metavar="FILE", help="output (default attribute_data/<dataset>.json)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--extend", metavar="FILE", help="keep FILE's attributes and complete classes; ask step 2 "
                   "only for the classes it lacks")
    p.add_argument("--cache", metavar="FILE", help="JSONL cache (default output/attribute_cache/<dataset>.jsonl)")
    p.add_argument("--min-attributes", type=int, default=MIN_ATTRIBUTES)
    p.add_argument("--max-attributes", type=int, default=MAX_ATTRIBUTES)
    p.add_argument("--sentences", type=int, default=1, help="sentences per class and attribute (J)")
    p.add_argument("--max-words", type=int, default=30)
    p.add_argument("--max-tokens", type=int, default=60, help="CLIP tokens per sentence (context is 77)")
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--max-retries", type=int, default=4, help="re-asks per request after a failure")
    p.add_argument("--backoff", type=float, default=2.0, help="first back-off in seconds (doubles per retry)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.check and not args.model:
        parser.error("--model is required to generate (or pass --check FILE)")
    if args.min_attributes < 1 or args.min_attributes > args.max_attributes:
        parser.error("need 1 <= --min-attributes <= --max-attributes")
    if args.sentences < 1 or args.max_retries < 0:
        parser.error("need --sentences >= 1 and --max-retries >= 0")
    try:
        return run_check(args) if args.check else run_generate(args)
    except (GenerationError, AttributeDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every answer received so far is in the cache: rerun the same command to "
              "resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
