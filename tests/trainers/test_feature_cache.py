"""The exact, shared image-feature cache (dassl/features/, attached by trainers/common/feature_cache.py).

1. Shards: round trip, corruption detected and recomputed, concurrent writers, LRU eviction.
2. Canonical computation: an image's features do not depend on the other images of its call.
3. Every frozen-encoder method with a synthetic config (discovered from scripts/*/method.sh):
   cold, warm and disabled runs give the same accuracies and bit-identical checkpoints.
4. Sharing: features one method computed serve another (other batch size); the test
   features of one class subset serve another; NUM_WORKERS changes nothing.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

import train
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from tests.utils.tiny_clip import build_tiny_clip
from tools import cache as cache_tool
from dassl.data.batch import ImageBatch
from dassl.features import FeatureStore, ImageFeatureServer, decode_shard, encode_shard
from trainers.common.cache_identity import compute_identity
from trainers.common.feature_cache import attach_feature_server
from trainers.common.image_encoder import ImageEncoder
from trainers.common.model import FixedTextCLIP, PromptCLIP
from trainers.common.precision import resolve_precision
from trainers.common.prompt_learner import PromptLearner

REPO = Path(__file__).resolve().parents[2]
GROUP = "Toy/eval"


def keys(n: int, start: int = 0):
    return [f"{i:032x}" for i in range(start, start + n)]


# ------------------------------------------------------------------------ 1. shards
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_shard_round_trip(dtype):
    features = torch.randn(5, 7).to(dtype)
    got_keys, got = decode_shard(encode_shard(keys(5), features))
    assert got_keys == keys(5) and got.dtype == dtype and torch.equal(got, features)


def test_a_corrupt_shard_is_reported_deleted_and_never_used(tmp_path, capsys):
    store = FeatureStore(tmp_path)
    good = store.write_shard("c", GROUP, keys(3), torch.ones(3, 4))
    truncated = store.write_shard("c", GROUP, keys(3, 3), torch.ones(3, 4))
    flipped = store.write_shard("c", GROUP, keys(3, 6), torch.ones(3, 4))
    truncated.write_bytes(truncated.read_bytes()[:-5])
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 1
    flipped.write_bytes(bytes(data))
    (good.parent / "junk.feat").write_bytes(b"not a shard")
    read = list(store.read_group("c", GROUP))
    assert [path for path, _, _ in read] == [good]
    out = capsys.readouterr().out
    assert out.count("deleting the corrupt shard") == 3 and "checksum mismatch" in out
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]


def _write_shards(root: str, writer: int, n: int) -> None:
    store = FeatureStore(root)
    for i in range(n):
        store.write_shard("c", GROUP, keys(10, start=100 * writer + 10 * i), torch.full((10, 64), float(writer)))


def test_concurrent_writers_fill_one_group(tmp_path):
    context = multiprocessing.get_context("fork")  # separate processes, as separate runs
    workers = [context.Process(target=_write_shards, args=(str(tmp_path), w, 5)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    table = {}
    for _, shard_keys, features in FeatureStore(tmp_path).read_group("c", GROUP):
        table.update(zip(shard_keys, features))
    assert len(table) == 4 * 5 * 10
    assert all(float(table[f"{100 * w + 7:032x}"][0]) == w for w in range(4))
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_least_recently_used_shards_are_evicted_beyond_the_limit(tmp_path):
    store = FeatureStore(tmp_path)
    groups = ("Toy/eval", "Toy/eval", "Other/eval", "Other/eval")
    paths = [store.write_shard("c", g, keys(4, 10 * i), torch.zeros(4, 256)) for i, g in enumerate(groups)]
    size = paths[0].stat().st_size
    for age, path in zip((400, 300, 200, 100), paths):  # paths[0] is the oldest
        os.utime(path, (time.time() - age, time.time() - age))
    list(store.read_group("c", "Toy/eval"))  # reading marks paths[0] and paths[1] used now
    limited = FeatureStore(tmp_path, max_bytes=3 * size)
    assert limited.enforce_limit(protect={paths[2]}) == size
    # The least recently used unprotected shard goes: paths[3], not paths[0] (read) nor paths[2].
    assert [p.exists() for p in paths] == [True, True, True, False]
    assert limited.enforce_limit() == 0  # within the limit now


def test_stale_temporary_files_are_removed(tmp_path):
    store = FeatureStore(tmp_path)
    shard = store.write_shard("c", GROUP, keys(1), torch.zeros(1, 2))
    stale, fresh = shard.parent / ".tmp-1-dead", shard.parent / ".tmp-2-live"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    store.remove_stale_temporaries()
    assert not stale.exists() and fresh.exists() and shard.exists()


# ------------------------------------------------------------- 2. canonical computation
@pytest.fixture(scope="module")
def encoder():
    return ImageEncoder(build_tiny_clip(image_resolution=32, vision_layers=2).float().visual)


def server_for(encoder, chunk=4, store=None):
    server = ImageFeatureServer(encode=encoder.compute, context=resolve_precision("fp32", "cpu").exact_autocast,
                                device=torch.device("cpu"), chunk=chunk, compute_id="c", store=store)
    encoder.feature_server = server
    return server


def test_the_size_limit_is_checked_after_writes_only(encoder, tmp_path, monkeypatch):
    store = FeatureStore(tmp_path, max_bytes=2**30)
    checks = []
    monkeypatch.setattr(store, "enforce_limit", lambda protect=frozenset(): checks.append(set(protect)) or 0)
    server = server_for(encoder, chunk=4, store=store)
    try:
        images = torch.randn(3, 3, 32, 32)
        encoder(ImageBatch(images, keys(3), GROUP))
        server.end_pass(GROUP)  # computed and wrote a shard: the limit is checked
        assert len(checks) == 1 and len(checks[0]) == 1
        reader = server_for(encoder, chunk=4, store=store)
        encoder(ImageBatch(None, keys(3), GROUP))  # read from disk
        reader.end_pass(GROUP)  # nothing written: no walk of the store
        assert len(checks) == 1
    finally:
        encoder.feature_server = None


def test_features_do_not_depend_on_the_other_images_of_the_call(encoder):
    server = server_for(encoder, chunk=4)
    try:
        images = torch.randn(11, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        reference = server.compute(images)
        perm = torch.randperm(11, generator=torch.Generator().manual_seed(1))
        assert torch.equal(server.compute(images[perm]), reference[perm])
        assert torch.equal(server.compute(images[5:6]), reference[5:6])  # alone, padded to 4
        assert torch.equal(encoder(images[2:9]), reference[2:9])  # forward goes through the server
        # The plain computation is close but depends on the batch it is in.
        assert torch.allclose(encoder.compute(images), reference, atol=1e-5)
    finally:
        encoder.feature_server = None


def test_an_identified_batch_is_served_by_its_keys_and_misuse_is_refused(encoder, tmp_path):
    server = server_for(encoder, chunk=4, store=FeatureStore(tmp_path))
    try:
        images = torch.randn(3, 3, 32, 32)
        first = encoder(ImageBatch(images, keys(3), GROUP))
        assert torch.equal(first, server.compute(images))
        assert server.stats()["evaluation"] == {"hits": 0, "misses": 3}
        server.end_pass(GROUP)  # writes the shard
        unread = ImageBatch(None, keys(3), GROUP)
        assert torch.equal(encoder(unread), first)  # from the table, no pixels needed
        with pytest.raises(RuntimeError, match="visual prompts, but the model declares image_features_are_fixed True"):
            encoder(unread, prompts=torch.zeros(1, encoder.width))  # a served tower takes no prompts
        encoder.feature_server = None
        with pytest.raises(RuntimeError, match="not read.*FEATURE_CACHE.ENABLED False"):
            encoder(unread, prompts=torch.zeros(1, encoder.width))  # prompts need the pixels
        encoder.feature_server = server
        with pytest.raises(RuntimeError, match="2 features of a prepared pass are missing"):
            encoder(ImageBatch(None, keys(3, 2), GROUP))  # items 3 and 4 were never computed
        fresh = server_for(encoder, chunk=4, store=FeatureStore(tmp_path))
        assert torch.equal(encoder(unread), first)  # from disk
        assert fresh.stats() == {"training": {"hits": 0, "misses": 0}, "evaluation": {"hits": 3, "misses": 0}}
    finally:
        encoder.feature_server = None


def test_the_computation_identity_names_what_changes_the_bits(encoder):
    fp32 = resolve_precision("fp32", "cpu")
    base, description = compute_identity("tiny", encoder, fp32, 32, torch.device("cpu"))
    assert description["chunk"] == 32 and description["torch"] == torch.__version__
    assert compute_identity("tiny", encoder, fp32, 8, torch.device("cpu"))[0] != base
    assert compute_identity("other", encoder, fp32, 32, torch.device("cpu"))[0] != base
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 2)  # another split of the reductions between threads
        assert compute_identity("tiny", encoder, fp32, 32, torch.device("cpu"))[0] != base
    finally:
        torch.set_num_threads(threads)


def test_no_server_where_the_image_features_depend_on_what_is_learned(tiny_clip, tmp_path):
    class VisualLearner(PromptLearner):
        prompts_image_tower = True

    cfg = train.setup_cfg(train.build_parser().parse_args(["FEATURE_CACHE.DIR", str(tmp_path)]))
    precision = resolve_precision("fp32", "cpu")
    prompted = PromptCLIP(tiny_clip, VisualLearner(["a", "b"], tiny_clip, n_ctx=2, verbose=False))
    prompted.requires_grad_(False)
    server, reason = attach_feature_server(prompted, cfg, precision, torch.device("cpu"), "tiny")
    assert server is None and "depend on what the method learns" in reason
    zero_shot = FixedTextCLIP(tiny_clip, torch.zeros(2, 32))
    zero_shot.requires_grad_(False)
    server, _ = attach_feature_server(zero_shot, cfg, precision, torch.device("cpu"), "tiny")
    assert server is not None and zero_shot.image_encoder.feature_server is server


# ------------------------------------------------------------ 3. every frozen-encoder method
@dataclass(frozen=True)
class Method:
    trainer: str
    cfg_dir: str
    eval_only: bool


def script_methods():
    """The methods the benchmark scripts run, with a synthetic config (as ``scripts/lib.sh`` picks it)."""
    found = []
    for path in sorted((REPO / "scripts").glob("*/method.sh")):
        values = dict(re.findall(r"^(TRAINER|CFG_DIR|EVAL_ONLY)=(\S+)", path.read_text(), re.M))
        method = Method(values["TRAINER"], values.get("CFG_DIR", values["TRAINER"]), values.get("EVAL_ONLY") == "1")
        if (REPO / "configs" / "trainers" / method.cfg_dir / "synthetic.yaml").is_file():
            found.append(method)
    return found


METHODS = script_methods()


@pytest.fixture(autouse=True)
def _private_caches_and_no_env_report(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMPT_CACHE_DIR", str(tmp_path / "project_cache"))
    # The environment report runs `pip list` (seconds per run) and has no bearing here.
    monkeypatch.setattr(train, "collect_env_info", lambda: "(not collected in this test)")


def run_args(method: Method, data: str, out: Path, cache: Path, *opts: str, subsample="base", seed=1, eval_from=None):
    """train.py arguments for the synthetic world (2 shots, 2 epochs or fewer; evaluated on the
    few-shot val split, 2 images per class, which goes through the cache as the test split does)."""
    config = REPO / "configs/trainers" / method.cfg_dir / "synthetic.yaml"
    epochs = min(2, yaml.safe_load(config.read_text()).get("OPTIM", {}).get("MAX_EPOCH", 2))  # LinearProbe: 1
    args = [
        "--root", data, "--seed", str(seed), "--trainer", method.trainer, "--output-dir", str(out),
        "--dataset-config-file", str(REPO / "configs/datasets/synthetic.yaml"), "--config-file", str(config),
    ]
    if method.eval_only or eval_from:
        args.append("--eval-only")
    if eval_from:
        args += ["--model-dir", str(eval_from), "--load-epoch", str(epochs)]
    args += [
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", subsample, "OPTIM.MAX_EPOCH", str(epochs),
        "TEST.SPLIT", "val",
        "DATASET.CACHE_DIR", str(out) + "_splits", "FEATURE_CACHE.DIR", str(cache), *opts,
    ]
    return args


def run(method: Method, data: str, out: Path, cache: Path, *opts: str, **kwargs) -> str:
    """One in-process train.py run (``run_args``); returns its log."""
    train.cli(run_args(method, data, out, cache, *opts, **kwargs))
    return (out / "log.txt").read_text()


def accuracy(log: str) -> str:
    """The final accuracy line's value ("71.25%", or LinearProbe's "not available ..." on novel)."""
    return re.findall(r"\* accuracy: (.+)", log)[-1]


def cache_line(log: str) -> str:
    return [line for line in log.splitlines() if line.startswith("Image-feature cache")][-1]


def checkpoints(out: Path):
    found = {}
    for path in sorted(out.glob("*/model.pth.tar-*")):
        found[path.relative_to(out)] = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return found


def assert_same_checkpoints(a: Path, b: Path):
    ca, cb = checkpoints(a), checkpoints(b)
    assert ca and list(ca) == list(cb)
    for name in ca:
        assert ca[name].keys() == cb[name].keys()
        for key in ca[name]:
            assert torch.equal(ca[name][key], cb[name][key]), (name, key)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.trainer)
def test_cold_warm_and_disabled_runs_are_identical(method, synthetic_data_root, tmp_path):
    cache = tmp_path / "features"
    logs = {}
    for mode in ("cold", "warm", "disabled"):
        opts = ("FEATURE_CACHE.ENABLED", "False") if mode == "disabled" else ()
        out = tmp_path / mode
        if method.eval_only:
            logs[mode] = [run(method, synthetic_data_root, out / "new", cache, *opts, subsample="new")]
        else:
            logs[mode] = [run(method, synthetic_data_root, out / "base", cache, *opts),
                          run(method, synthetic_data_root, out / "new", cache, *opts, subsample="new",
                              eval_from=out / "base")]
        if mode == "cold" and "Image-feature cache not used" in logs[mode][0]:
            pytest.skip(f"{method.trainer} trains through the image encoder: {cache_line(logs[mode][0])}")

    for mode in ("warm", "disabled"):
        assert [accuracy(log) for log in logs[mode]] == [accuracy(log) for log in logs["cold"]], mode
        if not method.eval_only:
            assert_same_checkpoints(tmp_path / "cold" / "base", tmp_path / mode / "base")
    # (LinearProbe's novel run evaluates nothing, so it has no cache line.)
    lines = {mode: [cache_line(log) for log in logs[mode] if "Image-feature cache" in log] for mode in logs}
    # Cold runs computed features (a run may hit what it wrote itself, e.g. the probe's
    # training images under the test transform); warm runs computed none.
    assert all(re.search(r"[1-9]\d* misses", line) for line in lines["cold"]), lines["cold"]
    assert all(re.search(r"training \d+ hits, 0 misses; evaluation \d+ hits, 0 misses", line) for line in lines["warm"])
    assert all(line.startswith("Image-feature cache disabled") and "0 hits" in line for line in lines["disabled"])
    assert not any(p.name.endswith(".feat") for p in (tmp_path / "project_cache").rglob("*"))  # all went to DIR


# ----------------------------------------------------------------------------- 4. sharing
def method_named(trainer: str) -> Method:
    return next(m for m in METHODS if m.trainer == trainer)


def test_one_method_fills_the_cache_for_another(synthetic_data_root, tmp_path):
    """CoOp (batch 32) fills it; CoCoOp (batch 4, other model) then reads every training and
    evaluation feature and ends bit-identical to its run without the cache; the features of
    the base and new test classes then serve the all-class evaluation."""
    cache = tmp_path / "features"
    run(method_named("CoOp"), synthetic_data_root, tmp_path / "coop", cache)
    run(method_named("CoOp"), synthetic_data_root, tmp_path / "coop_new", cache, subsample="new",
        eval_from=tmp_path / "coop")
    cocoop = method_named("CoCoOp")
    warm = run(cocoop, synthetic_data_root, tmp_path / "warm", cache)
    assert re.search(r"training \d+ hits, 0 misses; evaluation 40 hits, 0 misses", cache_line(warm))
    off = run(cocoop, synthetic_data_root, tmp_path / "off", cache, "FEATURE_CACHE.ENABLED", "False")
    assert accuracy(warm) == accuracy(off)
    assert_same_checkpoints(tmp_path / "warm", tmp_path / "off")
    every_class = run(cocoop, synthetic_data_root, tmp_path / "all", cache, subsample="all", eval_from=tmp_path / "warm")
    assert "evaluation 80 hits, 0 misses" in cache_line(every_class)


def test_results_do_not_depend_on_the_number_of_workers(synthetic_data_root, tmp_path):
    coop = method_named("CoOp")
    for workers in (0, 2):
        run(coop, synthetic_data_root, tmp_path / f"w{workers}", tmp_path / f"features{workers}",
            "DATALOADER.NUM_WORKERS", str(workers))
    assert_same_checkpoints(tmp_path / "w0", tmp_path / "w2")


def test_an_interrupted_run_resumes_exactly(synthetic_data_root, tmp_path):
    coop = method_named("CoOp")
    run(coop, synthetic_data_root, tmp_path / "full", tmp_path / "features_full")
    cache, part_dir = tmp_path / "features", tmp_path / "part"
    args = run_args(coop, synthetic_data_root, part_dir, cache)
    cfg = train.setup_cfg(train.build_parser().parse_args(args))
    set_random_seed(cfg.SEED)
    part = build_trainer(cfg)
    part.before_train()
    part.epoch = 0
    part.run_epoch()
    part.after_epoch()  # saved epoch 1 of 2, then "killed"
    torch.manual_seed(999)  # the relaunched process draws other numbers first
    resumed = run(coop, synthetic_data_root, part_dir, cache)
    assert "Previous epoch: 1" in resumed
    assert_same_checkpoints(tmp_path / "full", part_dir)


def test_a_cache_that_cannot_be_written_is_read_and_the_run_goes_on(synthetic_data_root, tmp_path, monkeypatch):
    coop, cache = method_named("CoOp"), tmp_path / "features"
    filled = run(coop, synthetic_data_root, tmp_path / "fill", cache)

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FeatureStore, "_write_file", staticmethod(full_disk))
    warm = run(coop, synthetic_data_root, tmp_path / "warm", cache)
    assert re.search(r"training \d+ hits, 0 misses; evaluation 40 hits, 0 misses", cache_line(warm))
    cold = run(coop, synthetic_data_root, tmp_path / "cold", tmp_path / "other")
    assert "cannot write to" in cold and "adds nothing to it" in cold
    assert accuracy(cold) == accuracy(warm) == accuracy(filled)
    assert not list((tmp_path / "other").rglob("*.feat"))
    assert_same_checkpoints(tmp_path / "fill", tmp_path / "cold")


def test_unseeded_runs_keep_training_features_in_memory(synthetic_data_root, tmp_path):
    cache = tmp_path / "features"
    log = run(method_named("CoOp"), synthetic_data_root, tmp_path / "run", cache, seed=-1)
    assert "evaluation 0 hits, 40 misses" in cache_line(log)
    groups = {p.parent.relative_to(cache).parts[3] for p in cache.rglob("*.feat")}  # v1/<computation>/<dataset>/<group>
    assert groups == {"eval"}  # nobody can reuse an unseeded run's augmentations


def test_cache_tool_info_and_clear(synthetic_data_root, tmp_path, capsys):
    cache = tmp_path / "features"
    run(method_named("CoOp"), synthetic_data_root, tmp_path / "run", cache)
    capsys.readouterr()
    assert cache_tool.main(["info", "--dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "Synthetic" in out and "train seed1" in out and "2 epochs (0-1)" in out and " 40 " in out
    assert re.search(r"Total: \d+ shards", out)
    cache_tool.main(["clear", "--dir", str(cache), "--dataset", "Synthetic"])
    assert not list(cache.rglob("*.feat"))
    cache_tool.main(["info", "--dir", str(cache)])
    assert "(empty)" in capsys.readouterr().out
