"""parse_test_res.py on fabricated logs: both end signals, --test-log, base-to-new table."""
import csv
import os

import pytest

import parse_test_res as ptr


def write_log(path, acc, end="Finish training", extra_before=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = ["Loading trainer: CoOp", "epoch [1/1] batch [1/1] loss 0.1 (0.1)"]
    if extra_before is not None:
        lines += ["=> result", f"* accuracy: {extra_before:.2f}%"]  # e.g. a val eval mid-training
    if end:
        lines.append(end)
    lines += ["Deploy the last-epoch model", "=> result", "* total: 100", f"* accuracy: {acc:.2f}%", "* error: 0.0%"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def test_both_end_signals_and_summary(tmp_path, capsys):
    write_log(str(tmp_path / "seed1" / "log.txt"), 80.0, "Finish training", extra_before=10.0)
    write_log(str(tmp_path / "seed2" / "log.txt"), 90.0, "Finished training")
    ptr.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "accuracy: 80.00%" in out and "accuracy: 90.00%" in out
    assert "* accuracy: 85.00% +- 5.00%" in out
    ptr.main([str(tmp_path), "--ci95"])
    assert f"+- {1.96 * 5 / 2 ** 0.5:.2f}%" in capsys.readouterr().out


def test_test_log_mode_and_nothing_found(tmp_path, capsys):
    write_log(str(tmp_path / "seed1" / "log.txt"), 70.0, end=None)
    with pytest.raises(ValueError, match="Nothing found"):
        ptr.main([str(tmp_path)])
    ptr.main([str(tmp_path), "--test-log"])
    assert "* accuracy: 70.00% +- 0.00%" in capsys.readouterr().out


def test_base2new_table(tmp_path, capsys):
    root = tmp_path / "base2new"
    common = "shots_16/CoOp/vit_b16_ctxv1"
    for ds, bases, news in [("eurosat", [90.0, 92.0], [60.0, 64.0]), ("caltech101", [98.0], [94.0])]:
        for i, (b, n) in enumerate(zip(bases, news), 1):
            write_log(str(root / "train_base" / ds / common / f"seed{i}" / "log.txt"), b)
            write_log(str(root / "test_new" / ds / common / f"seed{i}" / "log.txt"), n, end=None)
    write_log(str(root / "train_base" / "eurosat" / "shots_16/SemPT/cfg" / "seed1" / "log.txt"), 80.0)
    csv_path, md_path = str(tmp_path / "r.csv"), str(tmp_path / "r.md")
    ptr.main([str(root), "--base2new", "--csv", csv_path, "--markdown", md_path])
    out = capsys.readouterr().out
    # One table: the methods side by side, the dataset column because there are two datasets.
    assert out.count("===") == 2 and "Dataset" in out and "Method" in out

    rows = list(csv.DictReader(open(csv_path)))
    by_key = {(r["method"], r["dataset"]): r for r in rows}
    eurosat = by_key[("CoOp", "eurosat")]
    assert (eurosat["base"], eurosat["base_std"], eurosat["novel"], eurosat["novel_std"]) == ("91.00", "1.00", "62.00", "2.00")
    assert float(eurosat["hm"]) == pytest.approx(2 * 91 * 62 / 153, abs=0.005)
    assert (eurosat["base_seeds"], eurosat["novel_seeds"]) == ("2", "2")
    avg = by_key[("CoOp", "Average (2)")]
    b, n = (91 + 98) / 2, (62 + 94) / 2
    assert float(avg["base"]) == pytest.approx(b, abs=0.005)
    assert float(avg["hm"]) == pytest.approx(2 * b * n / (b + n), abs=0.005)
    assert by_key[("SemPT", "eurosat")]["novel"] == ""  # no test_new run yet
    assert ("SemPT", "Average (1)") not in by_key  # an average needs both halves
    # Datasets in paper order, methods in table order (ours last) inside each dataset.
    assert [(r["dataset"], r["method"]) for r in rows] == [
        ("caltech101", "CoOp"), ("eurosat", "CoOp"), ("eurosat", "SemPT"), ("Average (2)", "CoOp")]

    md = open(md_path).read()
    assert md.count("| eurosat") == 2 and "91.00 ± 1.00" in md and "| Seeds" in md
    assert "91.00 ± 1.00" in out


def test_base2new_single_dataset_has_one_row_per_method(tmp_path, capsys):
    root = tmp_path / "base2new"
    for trainer, base, new in [("SemPT", 70.0, 60.0), ("CoOp", 80.0, 50.0), ("KgCoOp", 75.0, 55.0)]:
        write_log(str(root / "train_base" / "dtd" / f"shots_16/{trainer}/cfg" / "seed1" / "log.txt"), base)
        write_log(str(root / "test_new" / "dtd" / f"shots_16/{trainer}/cfg" / "seed1" / "log.txt"), new, end=None)
    rows = ptr.report_base2new(str(root), "accuracy")
    assert [r.method for r in rows] == ["CoOp", "KgCoOp", "SemPT"]
    headers, cells = ptr.base2new_table(rows)
    assert headers == ["Method", "Base", "Novel", "HM", "Seeds"]
    assert cells[2] == ["SemPT", "70.00 ± 0.00", "60.00 ± 0.00", f"{2 * 70 * 60 / 130:.2f}", "1"]


def test_base2new_labels_configs_when_a_trainer_has_several(tmp_path):
    root = tmp_path / "base2new"
    for cfg in ("a", "b"):
        write_log(str(root / "train_base" / "dtd" / f"shots_16/CoOp/{cfg}" / "seed1" / "log.txt"), 70.0)
    rows = ptr.base2new_rows(ptr.collect_base2new(str(root)))
    assert [r.method for r in rows] == ["CoOp (a, shots_16)", "CoOp (b, shots_16)"]


def test_base2new_reads_eval_only_base_runs(tmp_path, capsys):
    """Zero-shot CLIP's train_base run only evaluates: its log has no end-of-training line."""
    root = tmp_path / "base2new"
    base_log = root / "train_base" / "dtd" / "shots_16/ZeroshotCLIP/vit_b16" / "seed1" / "log.txt"
    write_log(str(base_log), 55.0, end=None)
    with open(base_log) as f:
        text = f.read()
    base_log.write_text("eval_only: False\n" + text)  # a training run that died before finishing
    with pytest.raises(ValueError, match="No base-to-new logs"):
        ptr.main([str(root), "--base2new"])
    base_log.write_text("eval_only: True\n" + text)
    write_log(str(root / "test_new" / "dtd" / "shots_16/ZeroshotCLIP/vit_b16" / "seed1" / "log.txt"), 60.0, end=None)
    ptr.main([str(root), "--base2new"])
    out = capsys.readouterr().out
    assert "55.00" in out and "60.00" in out
