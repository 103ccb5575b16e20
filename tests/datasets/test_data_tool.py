"""``python -m tools.data``: check output and every error message; download-splits offline."""
from __future__ import annotations

import os

import pytest

from tests.utils.fabricate import make_eurosat_tree, make_fgvc_aircraft_tree
from tools import data as data_tool


def run(capsys, *argv):
    code = data_tool.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_all_fifteen_datasets_are_checked(capsys, tmp_path):
    assert len(data_tool.benchmark_readers()) >= 15
    code, out = run(capsys, "check", "--root", str(tmp_path))
    assert code == 1
    for config in ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                   "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", "imagenetv2",
                   "imagenet_sketch", "imagenet_a", "imagenet_r"):
        assert f"== {config} " in out


def test_ready_dataset(capsys, tmp_path):
    make_eurosat_tree(tmp_path, n_per_class=10)
    code, out = run(capsys, "check", "--root", str(tmp_path), "--dataset", "EuroSAT")
    assert code == 0, out
    assert "5/5 readable" in out and "ready" in out and "MISSING" not in out


def test_missing_folder_names_archive_and_place(capsys, tmp_path):
    code, out = run(capsys, "check", "--root", str(tmp_path), "--dataset", "eurosat")
    assert code == 1
    assert "MISSING" in out and "EuroSAT.zip" in out and os.path.join(str(tmp_path), "eurosat") in out


def test_missing_required_subfolder(capsys, tmp_path):
    (tmp_path / "food-101").mkdir()
    code, out = run(capsys, "check", "--root", str(tmp_path), "--dataset", "food101")
    assert code == 1
    assert os.path.join(str(tmp_path), "food-101", "images") in out and "food-101.tar.gz" in out


def test_missing_split_file_names_drive_id_and_command(capsys, tmp_path):
    make_eurosat_tree(tmp_path, n_per_class=10, with_split=False)
    code, out = run(capsys, "check", "--root", str(tmp_path), "--dataset", "eurosat")
    assert code == 1
    assert "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" in out and "download-splits" in out
    assert not (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").exists()  # check never creates one


def test_unreadable_images_are_reported(capsys, tmp_path):
    make_eurosat_tree(tmp_path, n_per_class=10)
    for folder, _, files in os.walk(tmp_path / "eurosat" / "2750"):
        for name in files:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(b"not a jpeg")
    code, out = run(capsys, "check", "--root", str(tmp_path), "--dataset", "eurosat")
    assert code == 1 and "FAILED" in out and "0/5 readable" in out and "Cannot read image" in out


def test_reader_error_is_reported(capsys, tmp_path):
    make_fgvc_aircraft_tree(tmp_path)
    with open(tmp_path / "fgvc_aircraft" / "images_variant_test.txt", "a") as f:
        f.write("9999999 Not-A-Variant\n")
    code, out = run(capsys, "check", "--root", str(tmp_path), "--dataset", "fgvc_aircraft")
    assert code == 1 and "FAILED" in out and "Not-A-Variant" in out


def test_unknown_dataset_lists_choices(tmp_path):
    with pytest.raises(SystemExit, match="choose one of: .*eurosat"):
        data_tool.main(["check", "--root", str(tmp_path), "--dataset", "eurosatt"])


def test_download_splits_offline(capsys, tmp_path, monkeypatch):
    import gdown

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: network is unreachable")

    monkeypatch.setattr(gdown, "download", offline)
    code, out = run(capsys, "download-splits", "--root", str(tmp_path), "--dataset", "eurosat")
    assert code == 1
    assert "could not download split_zhou_EuroSAT.json" in out and "network" in out
    assert "https://drive.google.com/uc?id=1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" in out
    assert str(tmp_path / "eurosat" / "split_zhou_EuroSAT.json") in out


def test_download_splits_skips_present_and_saves_new(capsys, tmp_path, monkeypatch):
    import gdown

    calls = []

    def fake_download(id, output, quiet):
        calls.append(id)
        with open(output, "w") as f:
            f.write("{}")
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    make_eurosat_tree(tmp_path, n_per_class=10)
    code, out = run(capsys, "download-splits", "--root", str(tmp_path), "--dataset", "oxford_flowers")
    assert code == 0 and sorted(calls) == sorted(["1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT", "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"])
    code, out = run(capsys, "download-splits", "--root", str(tmp_path), "--dataset", "eurosat")
    assert code == 0 and "already present" in out and len(calls) == 2
