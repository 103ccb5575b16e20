"""A trainer that resolves its config in check_cfg (upstream spellings, unset defaults filled in)
trains and resumes in its own run folder: the run record and the resume check compare the
config as given, not as the trainer rewrote it."""
from __future__ import annotations

import train

from .test_feature_cache import METHODS, run


def test_prograd_with_upstream_spellings_trains_then_resumes(synthetic_data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMPT_CACHE_DIR", str(tmp_path / "project_cache"))
    monkeypatch.setattr(train, "collect_env_info", lambda: "(not collected in this test)")
    prograd = next(m for m in METHODS if m.trainer == "ProGrad")
    # CTX_INIT unset (ProGrad fills in True) and N_CTX written as upstream's scripts do.
    opts = ("TRAINER.COOP.N_CTX", "4", "OPTIM.MAX_EPOCH", "1")
    out = tmp_path / "run"
    log = run(prograd, synthetic_data_root, out, tmp_path / "features", *opts)
    assert "=> result" in log and "TRAINER.COOP.N_CTX = 4 (upstream spelling)" in log
    # Interrupted after training, before its final test: the same command resumes it.
    lines = (out / "log.txt").read_text().splitlines()
    (out / "log.txt").write_text("\n".join(lines[:next(i for i, l in enumerate(lines) if l.startswith("=> result"))]))
    resumed = run(prograd, synthetic_data_root, out, tmp_path / "features", *opts)
    assert "=> result" in resumed and "another config" not in resumed
