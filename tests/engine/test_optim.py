"""Closed-form LR schedules (upstream Dassl's per-epoch values) and optimizer factory."""
import math

import pytest
import torch

from dassl.config import get_cfg_default
from dassl.optim import build_lr_scheduler, build_optimizer


def optim_cfg(**kw):
    cfg = get_cfg_default()
    for k, v in kw.items():
        setattr(cfg.OPTIM, k, v)
    return cfg.OPTIM


def lrs(ocfg, epochs):
    opt = build_optimizer(torch.nn.Linear(2, 2), ocfg)
    sched = build_lr_scheduler(opt, ocfg)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


COOP = dict(NAME="sgd", LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)


def test_spec_vector_e10():
    got = lrs(optim_cfg(LR=0.002, MAX_EPOCH=10, **COOP), 10)
    want = [1e-5, 0.002, 0.00195106, 0.00180902, 0.00158779, 0.00130902, 0.001, 0.000690983, 0.000412215, 0.000190983]
    assert got == pytest.approx(want, rel=1e-5)


def test_spec_vector_e5_and_e2():
    assert lrs(optim_cfg(LR=0.0035, MAX_EPOCH=5, **COOP), 5) == pytest.approx(
        [1e-5, 0.0035, 0.00316578, 0.00229078, 0.00120922], rel=1e-5
    )
    assert lrs(optim_cfg(LR=0.0026, MAX_EPOCH=2, **COOP), 2) == pytest.approx([1e-5, 0.0026])


def test_linear_warmup_step_schedules_and_no_recount():
    got = lrs(optim_cfg(LR=0.1, MAX_EPOCH=6, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.5,
                        WARMUP_EPOCH=2, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-4), 6)
    assert got == pytest.approx([1e-4, 0.05, 0.1, 0.1, 0.05, 0.05])
    got = lrs(optim_cfg(LR=1.0, MAX_EPOCH=6, LR_SCHEDULER="multi_step", STEPSIZE=(2, 4), GAMMA=0.1), 6)
    assert got == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    got = lrs(optim_cfg(LR=1.0, MAX_EPOCH=4, LR_SCHEDULER="cosine", WARMUP_EPOCH=1,
                        WARMUP_TYPE="constant", WARMUP_RECOUNT=False), 4)
    assert got[1:] == pytest.approx([(1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3)])


def test_state_is_plain_and_resume_recomputes_lr():
    ocfg = optim_cfg(LR=0.002, MAX_EPOCH=10, **COOP)
    opt = build_optimizer(torch.nn.Linear(2, 2), ocfg)
    sched = build_lr_scheduler(opt, ocfg)
    for _ in range(4):
        sched.step()
    state = sched.state_dict()
    assert all(isinstance(v, (int, float, list)) for v in state.values())
    # A new optimizer/scheduler pair restored from that state continues the cosine.
    opt2 = build_optimizer(torch.nn.Linear(2, 2), ocfg)
    sched2 = build_lr_scheduler(opt2, ocfg)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.00158779, rel=1e-5)
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.00130902, rel=1e-5)


def test_build_optimizer_variants_and_errors():
    model = torch.nn.Linear(3, 2)
    for name, cls in [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                      ("amsgrad", torch.optim.Adam), ("rmsprop", torch.optim.RMSprop)]:
        opt = build_optimizer(model, optim_cfg(NAME=name, LR=0.5))
        assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.5
    assert build_optimizer(model, optim_cfg(NAME="amsgrad")).param_groups[0]["amsgrad"] is True
    sgd = build_optimizer(model, optim_cfg(NAME="sgd"))
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["weight_decay"] == 5e-4
    groups = [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.1}]
    opt = build_optimizer(groups, optim_cfg(NAME="sgd", LR=0.01))
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    with pytest.raises(ValueError, match="OPTIM.NAME"):
        build_optimizer(model, optim_cfg(NAME="lion"))
    with pytest.raises(ValueError, match="LR_SCHEDULER"):
        build_lr_scheduler(sgd, optim_cfg(LR_SCHEDULER="poly"))


def test_adam_epsilon_is_configurable_and_defaults_to_torch():
    model = torch.nn.Linear(3, 2)
    for name in ("adam", "amsgrad", "adamw", "radam"):
        assert build_optimizer(model, optim_cfg(NAME=name)).param_groups[0]["eps"] == 1e-8
        assert build_optimizer(model, optim_cfg(NAME=name, ADAM_EPS=1e-3)).param_groups[0]["eps"] == 1e-3


def test_adam_epsilon_keeps_fp16_parameters_finite():
    """Why TCP sets OPTIM.ADAM_EPS 1e-3: in float16, 1e-8 rounds to 0, so a zero (or tiny)
    gradient divides 0 by 0."""

    def step(eps):
        param = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
        opt = build_optimizer([param], optim_cfg(NAME="adam", LR=0.1, ADAM_EPS=eps))
        param.grad = torch.tensor([0.0, 1e-4, 1.0], dtype=torch.float16)
        opt.step()
        return param.detach()

    assert not torch.isfinite(step(1e-8)).all()
    assert torch.isfinite(step(1e-3)).all()
