"""``python -m tools.data download``, without network: a loopback mirror serves fabricated archives.

Each dataset's archives are packed in its source's real layout (tests/datasets/loopback_mirror.py)
and fetched with ``--mirror``, the option users have; the archives' md5s are those of the
fabricated files (the real ones are torchvision's), except in the checksum-mismatch test.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
from pathlib import Path

import pytest

from tests.datasets.loopback_mirror import LoopbackMirror, publish, truncated_copy
from tools import data as data_tool
from tools.data import download as download_mod
from tools.data import fetch, sources

ALL_FIFTEEN = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
               "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", "imagenetv2",
               "imagenet_sketch", "imagenet_a", "imagenet_r")


def run(capsys, *argv):
    code = data_tool.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path):
    with LoopbackMirror(tmp_path / "mirror") as server:
        yield server


@pytest.fixture
def fabricated_checksums(monkeypatch, tmp_path):
    """Plans whose md5s are the fabricated archives' (where the real source publishes one)."""
    real_build = sources.build_plans

    def build(archives_dir):
        plans = real_build(archives_dir)
        for config, plan in plans.items():
            files = []
            for entry in plan.files:
                served = tmp_path / "mirror" / plan.folder / entry.name
                if entry.md5 and served.is_file():
                    entry = dataclasses.replace(entry, md5=md5(served))
                files.append(entry)
            plans[config] = dataclasses.replace(plan, files=tuple(files))
        return plans

    monkeypatch.setattr(download_mod, "build_plans", build)


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails, as on a machine without network."""
    def refuse(self, address):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def reader_train_size(root: Path, reader: str) -> int:
    """Items of the reader's train split (the test split for the test-only ImageNet variants)."""
    from dassl.data.datasets import DATASET_REGISTRY

    dataset = DATASET_REGISTRY.get(reader)(data_tool.reader_cfg(str(root), reader))
    return len(dataset.train_x if dataset.train_x is not None else dataset.test)


# ----------------------------------------------------------------------------- dry run
def test_dry_run_plans_all_fifteen_offline(capsys, tmp_path, no_network):
    root = tmp_path / "data"
    code, out = run(capsys, "download", "--dry-run", "all", "--root", str(root))
    assert code == 0, out
    assert "15 datasets planned" in out
    for config in ALL_FIFTEEN:
        assert f"== {config} (" in out
    # Each file: its source, checksum and target; torchvision's URL and md5 for Food-101.
    import torchvision.datasets as tv

    assert tv.Food101._URL in out and f"md5 {tv.Food101._MD5}" in out
    assert str(root / "archives" / "food-101" / "food-101.tar.gz") in out
    assert "Google Drive id 1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" in out
    assert "MANUAL" in out and "image-net.org" in out and "Stanford Cars is no longer served" in out
    assert not root.exists()  # a dry run writes nothing


def test_dry_run_with_mirror_names_mirror_urls(capsys, tmp_path):
    code, out = run(capsys, "download", "--dry-run", "eurosat", "--root", str(tmp_path), "--mirror", "https://m.example/d/")
    assert code == 0
    assert "https://m.example/d/eurosat/EuroSAT.zip" in out and "https://m.example/d/eurosat/split_zhou_EuroSAT.json" in out


def test_torchvision_is_asked_without_network(no_network):
    import torchvision.datasets as tv

    sources.torchvision_downloads.cache_clear()
    assert sources.torchvision_downloads("DTD") == ((tv.DTD._URL, "dtd-r1.0.1.tar.gz", tv.DTD._MD5),)
    assert sources.torchvision_downloads("StanfordCars") == ()  # its source is gone
    from torchvision.datasets import dtd as tv_dtd
    from torchvision.datasets import utils as tv_utils

    # The recorders are gone again: torchvision itself still downloads as before.
    assert tv_dtd.download_and_extract_archive is tv_utils.download_and_extract_archive
    assert tv_utils._urlretrieve.__module__ == "torchvision.datasets.utils"


def test_unknown_dataset_lists_choices(tmp_path):
    with pytest.raises(SystemExit, match="choose among: all, .*eurosat"):
        data_tool.main(["download", "--dry-run", "--root", str(tmp_path), "eurosatt"])


# ------------------------------------------------------------------ clean downloads
@pytest.mark.parametrize("config", ["eurosat", "dtd", "caltech101", "oxford_pets", "oxford_flowers", "food101",
                                    "fgvc_aircraft", "sun397", "ucf101", "stanford_cars", "imagenet_a",
                                    "imagenet_r", "imagenetv2", "imagenet_sketch"])
def test_clean_download_is_ready_for_check_and_reader(capsys, tmp_path, mirror, fabricated_checksums, config):
    tree = publish(config, mirror.directory, tmp_path)
    root = tmp_path / "data"
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, config)
    assert code == 0, out
    assert f"{config}: ready" in out
    plan = sources.build_plans(str(root / "archives"))[config]
    dataset_dir = root / plan.folder
    for rel in plan.expects:
        assert (dataset_dir / rel).exists(), rel
    # The same files as the fabricated tree, image for image.
    fabricated = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.jp*g"))
    fabricated += sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.JPEG"))
    downloaded = sorted(p.relative_to(dataset_dir).as_posix() for p in dataset_dir.rglob("*.jp*g"))
    downloaded += sorted(p.relative_to(dataset_dir).as_posix() for p in dataset_dir.rglob("*.JPEG"))
    assert downloaded == fabricated
    assert not any((root / "archives").rglob("*.part"))
    assert not any(p.is_file() for p in (root / "archives").rglob("*"))  # fetched archives go once unpacked
    code, out = run(capsys, "check", "--root", str(root), "--dataset", config)
    assert code == 0 and "NOT READY" not in out, out
    assert reader_train_size(root, plan.reader) > 0


def test_second_run_does_nothing(capsys, tmp_path, mirror, fabricated_checksums):
    publish("eurosat", mirror.directory, tmp_path)
    root = tmp_path / "data"
    assert run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "eurosat")[0] == 0
    before = len(mirror.log)
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "eurosat")
    assert code == 0 and "ready (already in place)" in out
    assert len(mirror.log) == before  # not even a size request


def test_existing_coop_folder_is_left_alone(capsys, tmp_path, mirror):
    from tests.utils.fabricate import make_eurosat_tree

    root = tmp_path / "data"
    make_eurosat_tree(root, n_per_class=4)
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "eurosat")
    assert code == 0 and "already in place" in out and mirror.log == []


# ------------------------------------------------------------------------- resuming
def test_download_cut_mid_stream_is_resumed(capsys, tmp_path, mirror, fabricated_checksums):
    publish("eurosat", mirror.directory, tmp_path)
    size = (mirror.directory / "eurosat" / "EuroSAT.zip").stat().st_size
    cut = size * 2 // 3
    assert cut > fetch.STREAM_CHUNK  # so that some bytes are written before the cut
    mirror.cut_after["/eurosat/EuroSAT.zip"] = cut
    root = tmp_path / "data"
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "eurosat")
    assert code == 0, out
    (first, first_range), (second, second_range) = mirror.gets("EuroSAT.zip")
    assert first_range is None and second_range.startswith("bytes=")
    assert 0 < int(second_range[6:-1]) <= cut  # the second request asks only for the rest
    assert (root / "eurosat" / "2750").is_dir()


def test_killed_download_continues_from_its_part_file(capsys, tmp_path, mirror, fabricated_checksums):
    publish("eurosat", mirror.directory, tmp_path)
    served = mirror.directory / "eurosat" / "EuroSAT.zip"
    root = tmp_path / "data"
    half = served.stat().st_size // 2
    truncated_copy(served, root / "archives" / "eurosat" / "EuroSAT.zip.part", half)
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "eurosat")
    assert code == 0, out
    assert mirror.gets("EuroSAT.zip") == [("/eurosat/EuroSAT.zip", f"bytes={half}-")]


def test_complete_verified_archive_is_not_fetched_again(capsys, tmp_path, mirror, fabricated_checksums):
    """An archive whose unpacking was interrupted is unpacked again, not downloaded again."""
    publish("eurosat", mirror.directory, tmp_path)
    root = tmp_path / "data"
    archive = root / "archives" / "eurosat" / "EuroSAT.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes((mirror.directory / "eurosat" / "EuroSAT.zip").read_bytes())
    (root / "archives" / "eurosat" / ".unpack-EuroSAT.zip" / "2750").mkdir(parents=True)  # an interrupted unpack
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "eurosat")
    assert code == 0, out
    assert mirror.gets("EuroSAT.zip") == []
    assert archive.is_file()  # put there by a person: kept
    assert not (root / "archives" / "eurosat" / ".unpack-EuroSAT.zip").exists()


# ---------------------------------------------------------------------------- failures
def test_checksum_mismatch_fails_and_deletes_the_download(capsys, tmp_path, mirror):
    publish("eurosat", mirror.directory, tmp_path)  # torchvision's md5 is the real archive's
    root = tmp_path / "data"
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "eurosat")
    assert code == 1
    assert "checksum mismatch" in out and "c8fa014336c82ac7804f0398fcb19387" in out and "deleted" in out
    assert not (root / "archives" / "eurosat" / "EuroSAT.zip").exists()
    assert not (root / "archives" / "eurosat" / "EuroSAT.zip.part").exists()
    assert not (root / "eurosat" / "2750").exists()


def test_server_error_fails_one_dataset_not_the_others(capsys, tmp_path, mirror, fabricated_checksums):
    publish("eurosat", mirror.directory, tmp_path)
    publish("dtd", mirror.directory, tmp_path)
    mirror.fail["/eurosat/EuroSAT.zip"] = 503
    root = tmp_path / "data"
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "eurosat", "dtd")
    assert code == 1
    assert "eurosat: FAILED" in out and "HTTP 503" in out and "dtd: ready" in out
    assert (root / "dtd" / "images").is_dir() and not (root / "eurosat" / "2750").exists()


def test_missing_file_on_mirror_names_the_url(capsys, tmp_path, mirror, fabricated_checksums):
    code, out = run(capsys, "download", "--root", str(tmp_path), "--mirror", mirror.url, "eurosat")
    assert code == 1 and "HTTP 404" in out and f"{mirror.url}/eurosat/EuroSAT.zip" in out


def test_offline_every_source_fails_with_a_clear_reason(capsys, tmp_path, no_network, monkeypatch):
    import gdown

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: network is unreachable")

    monkeypatch.setattr(gdown, "download", offline)
    code, out = run(capsys, "download", "--root", str(tmp_path), "eurosat", "imagenet_a")
    assert code == 1
    assert "eurosat: FAILED" in out and "imagenet_a: FAILED" in out
    assert "is the network available?" in out
    assert "cannot download Google Drive file 1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" in out
    assert f"put by hand into {tmp_path / 'archives' / 'eurosat'}" in out


def test_not_enough_disk_space_stops_before_downloading(capsys, tmp_path, mirror, fabricated_checksums, monkeypatch):
    publish("eurosat", mirror.directory, tmp_path)
    monkeypatch.setattr(download_mod, "free_space", lambda path: 10)
    code, out = run(capsys, "download", "--root", str(tmp_path / "data"), "--mirror", mirror.url, "eurosat")
    assert code == 1 and "Not enough free space" in out and "--skip-space-check" in out
    assert mirror.gets() == []  # sizes were asked (HEAD), nothing downloaded


# --------------------------------------------------------------------------- manual steps
def test_imagenet_asks_for_a_person_and_says_what_check_expects(capsys, tmp_path, no_network):
    root = tmp_path / "data"
    code, out = run(capsys, "download", "--root", str(root), "imagenet")
    assert code == 2
    assert "MANUAL STEP" in out and "https://image-net.org" in out
    assert str(root / "archives" / "imagenet") in out and "ILSVRC2012_img_val.tar" in out
    assert f"python -m tools.data check --root {root} --dataset imagenet` expects" in out
    assert "images/train, images/val" in out


def test_stanford_cars_comes_from_a_mirror(capsys, tmp_path, mirror, fabricated_checksums):
    """The manual files of a dataset whose source is gone are fetched from --mirror."""
    publish("stanford_cars", mirror.directory, tmp_path)
    code, out = run(capsys, "download", "--root", str(tmp_path / "data"), "--mirror", mirror.url, "stanford_cars")
    assert code == 0, out
    assert "/stanford_cars/cars_train.tgz" in [p for p, _ in mirror.gets()]


def test_local_mirror_folder(capsys, tmp_path, fabricated_checksums):
    publish("dtd", tmp_path / "mirror", tmp_path)
    code, out = run(capsys, "download", "--root", str(tmp_path / "data"), "--mirror", str(tmp_path / "mirror"), "dtd")
    assert code == 0, out
    assert (tmp_path / "data" / "dtd" / "split_zhou_DescribableTextures.json").is_file()


def test_imagenet_archives_put_by_hand_are_unpacked(capsys, tmp_path, monkeypatch):
    """ILSVRC-2012 as image-net.org ships it: train's per-class tars unpacked, val sorted by the devkit."""
    from torchvision.datasets import imagenet as tv_imagenet

    from tests.datasets.loopback_mirror import publish_imagenet

    root = tmp_path / "data"
    archives = root / "archives" / "imagenet"
    md5s = publish_imagenet(archives, tmp_path)
    # torchvision checks its own (real) md5s too: make them the fabricated archives'.
    monkeypatch.setattr(tv_imagenet, "ARCHIVE_META",
                        {key: (name, md5s[name]) for key, (name, _) in tv_imagenet.ARCHIVE_META.items()})
    code, out = run(capsys, "download", "--root", str(root), "imagenet")
    assert code == 0, out
    wnids = sorted(p.name for p in (root / "imagenet" / "images" / "train").iterdir())
    assert len(wnids) == 3
    assert all(len(list((root / "imagenet" / "images" / "train" / w).iterdir())) == 2 for w in wnids)
    val = {w: sorted(p.name for p in (root / "imagenet" / "images" / "val" / w).iterdir()) for w in wnids}
    # The ground truth gives image n the class n % 3 (sorted wnid order is the synset order here).
    assert val[wnids[0]] == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000004.JPEG"]
    assert all(p.is_file() for p in archives.iterdir() if not p.name.startswith("."))  # a person's files stay
    code, out = run(capsys, "check", "--root", str(root), "--dataset", "imagenet")
    assert code == 0, out
    assert reader_train_size(root, "ImageNet") == 6


def test_synthetic_world_needs_no_download(tmp_path):
    with pytest.raises(SystemExit, match="synthetic has nothing to download"):
        data_tool.main(["download", "--dry-run", "--root", str(tmp_path), "synthetic"])


def test_archive_without_the_expected_folder_is_named(capsys, tmp_path, mirror):
    """An archive of another layout (a mirror holding another version) fails with what it lacks."""
    import tarfile

    (mirror.directory / "imagenetv2").mkdir(parents=True)
    readme = tmp_path / "README.txt"
    readme.write_text("not the dataset\n")
    with tarfile.open(mirror.directory / "imagenetv2" / "imagenetv2-matched-frequency.tar.gz", "w:gz") as tar:
        tar.add(str(readme), arcname="other-version/README.txt")
    code, out = run(capsys, "download", "--root", str(tmp_path / "data"), "--mirror", mirror.url, "imagenetv2")
    assert code == 1
    assert "does not hold imagenetv2-matched-frequency-format-val" in out and "not the expected archive" in out
    assert not (tmp_path / "data" / "imagenetv2" / "imagenetv2-matched-frequency-format-val").exists()


def test_kept_archives_serve_as_a_mirror(capsys, tmp_path, mirror, fabricated_checksums):
    """--keep-archives leaves $DATA/archives in the --mirror layout: another root installs from it."""
    publish("oxford_pets", mirror.directory, tmp_path)
    first = tmp_path / "first"
    code, out = run(capsys, "download", "--root", str(first), "--mirror", mirror.url, "--keep-archives", "oxford_pets")
    assert code == 0, out
    assert (first / "archives" / "oxford_pets" / "images.tar.gz").is_file()
    (first / "archives" / "oxford_pets" / "split_zhou_OxfordPets.json").write_bytes(
        (first / "oxford_pets" / "split_zhou_OxfordPets.json").read_bytes())
    second = tmp_path / "second"
    code, out = run(capsys, "download", "--root", str(second), "--mirror", str(first / "archives"), "oxford_pets")
    assert code == 0, out
    assert sorted(os.listdir(second / "oxford_pets" / "images")) == sorted(os.listdir(first / "oxford_pets" / "images"))


def test_interrupted_download_keeps_its_part_and_resumes(tmp_path, mirror):
    """Ctrl-C stops a download at its next chunk; the next call asks only for the rest."""
    payload = os.urandom(5 * fetch.STREAM_CHUNK)
    (mirror.directory / "x").mkdir(parents=True)
    (mirror.directory / "x" / "blob.bin").write_bytes(payload)
    part = tmp_path / "blob.bin.part"

    def interrupt_after_first_chunk(done, total):
        if done > 0:
            fetch.CANCEL.set()

    try:
        with pytest.raises(fetch.FetchError, match="interrupted; .* the next run resumes"):
            fetch.http_download(f"{mirror.url}/x/blob.bin", str(part), progress=interrupt_after_first_chunk)
    finally:
        fetch.CANCEL.clear()
    kept = part.stat().st_size
    assert 0 < kept < len(payload)
    fetch.http_download(f"{mirror.url}/x/blob.bin", str(part))
    assert part.read_bytes() == payload
    assert mirror.gets("blob.bin")[-1] == ("/x/blob.bin", f"bytes={kept}-")


def test_split_files_through_gdown_and_an_archive_put_by_hand(capsys, tmp_path, monkeypatch, no_network):
    """Without a mirror, split files come through gdown; a Drive answer that is not a split
    (its quota page, CoOp issue 29) is refused and removed."""
    import gdown

    served = tmp_path / "served"
    publish("eurosat", served, tmp_path)
    root = tmp_path / "data"
    (root / "archives" / "eurosat").mkdir(parents=True)
    (root / "archives" / "eurosat" / "EuroSAT.zip").write_bytes((served / "eurosat" / "EuroSAT.zip").read_bytes())
    monkeypatch.setattr(download_mod, "build_plans", lambda archives_dir: {
        config: dataclasses.replace(plan, files=tuple(
            dataclasses.replace(f, md5=md5(served / "eurosat" / f.name)) if f.name == "EuroSAT.zip" else f
            for f in plan.files))
        for config, plan in sources.build_plans(archives_dir).items()})
    answers = {"1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o": b"<html>Google Drive - Quota exceeded</html>"}

    def fake_gdown(id, output, quiet, resume):
        with open(output, "wb") as f:
            f.write(answers[id])
        return output

    monkeypatch.setattr(gdown, "download", fake_gdown)
    code, out = run(capsys, "download", "--root", str(root), "eurosat")
    assert code == 1 and "is not a CoOp split file" in out
    assert not (root / "eurosat" / "split_zhou_EuroSAT.json").exists()
    assert not (root / "eurosat" / "split_zhou_EuroSAT.json.part").exists()
    assert (root / "eurosat" / "2750").is_dir()  # the archive was unpacked all the same
    answers["1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"] = (served / "eurosat" / "split_zhou_EuroSAT.json").read_bytes()
    code, out = run(capsys, "download", "--root", str(root), "eurosat")
    assert code == 0, out
    assert (root / "archives" / "eurosat" / "EuroSAT.zip").is_file()  # put there by a person: kept


def test_coop_folder_without_unread_extras_is_not_downloaded_again(capsys, tmp_path, mirror):
    """A CoOp folder holding what the readers read (Food-101 without meta/) counts as in place."""
    from tests.utils.fabricate import make_food101_tree

    root = tmp_path / "data"
    make_food101_tree(root)
    assert not (root / "food-101" / "meta").exists()
    code, out = run(capsys, "download", "--root", str(root), "--mirror", mirror.url, "food101")
    assert code == 0 and "already in place" in out and mirror.log == []


def test_check_names_the_download_command(capsys, tmp_path):
    code, out = run(capsys, "check", "--root", str(tmp_path), "--dataset", "dtd")
    assert code == 1 and f"python -m tools.data download --root {tmp_path} dtd" in out
