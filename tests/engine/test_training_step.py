"""The engine owns the optimisation step: loss scaling, the ``after_backward`` hook with
unscaled gradients, the optimizer step and one learning-rate step per epoch."""
import torch
import torch.nn.functional as F

from dassl.engine import build_trainer
from dassl.utils import set_random_seed

from tests.engine.engine_toy import toy_cfg


def make(toy_root, tmp_path, name, **kw):
    cfg = toy_cfg(toy_root, str(tmp_path / name), TRAINER__NAME=name, **kw)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def test_engine_steps_the_schedule_once_per_epoch(toy_root, tmp_path):
    engine_owned = make(toy_root, tmp_path, "EngineToyStepTrainer", OPTIM__MAX_EPOCH=3)
    engine_owned.train()
    # The upstream-style trainer calls update_lr itself on each epoch's last batch.
    upstream_style = make(toy_root, tmp_path, "EngineToyTrainer", OPTIM__MAX_EPOCH=3)
    upstream_style.train()
    assert engine_owned.sched.last_epoch == upstream_style.sched.last_epoch == 3
    assert engine_owned.get_current_lr() == upstream_style.get_current_lr()


def test_after_backward_sees_unscaled_gradients(toy_root, tmp_path):
    trainer = make(toy_root, tmp_path, "EngineToyStepTrainer")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    trainer.set_model_mode("train")
    trainer.model.eval()  # no dropout: the same loss twice
    batch = next(iter(trainer.train_loader_x))
    image, label, _ = trainer.parse_batch_train(batch)

    reference = trainer.model[2].weight.detach().clone().requires_grad_(True)
    flat = trainer.model[1](trainer.model[0](image))
    loss = F.cross_entropy(F.linear(flat, reference, trainer.model[2].bias), label)
    (expected,) = torch.autograd.grad(loss, reference)

    before = trainer.model[2].weight.detach().clone()
    trainer.forward_backward(batch)
    assert torch.allclose(trainer.seen_gradients[-1], expected, atol=1e-6)
    # ... and the step used them: SGD with momentum 0.9 from zero state moves by lr * (g + wd * w).
    lr, wd = trainer.get_current_lr(), trainer.cfg.OPTIM.WEIGHT_DECAY
    assert torch.allclose(trainer.model[2].weight.detach(), before - lr * (expected + wd * before), atol=1e-6)
