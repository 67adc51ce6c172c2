"""Learning-rate schedules: WarmupCosineLR follows its formula, and configs wire it through LightningCLI."""
from __future__ import annotations

import math

import pytest
import torch

import main
from optim.schedules import WarmupCosineLR, optimizers_and_schedule


def test_warmup_cosine_follows_its_formula():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = WarmupCosineLR(opt, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    lrs = []
    for _ in range(130):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(1.0) and lrs[10] == pytest.approx(2.0)
    mid = 10 + 50  # half-way through the decay: lr = min + (1 - min) * 0.5 * (1 + cos(pi / 2))
    assert lrs[mid] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert lrs[110] == pytest.approx(0.2) and lrs[129] == pytest.approx(0.2)  # held at the floor
    constant = WarmupCosineLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), warmup_steps=2)
    assert constant.factor(1000) == 1.0
    with pytest.raises(ValueError, match="warmup_steps < total_steps"):
        WarmupCosineLR(opt, warmup_steps=10, total_steps=10)


def test_configs_wire_the_schedule_per_step():
    cfg = main.parse_config(["fit", "--config", "configs/c2f/places2.yaml"]).fit
    sched = cfg.model.init_args.lr_scheduler
    assert sched.class_path == "optim.schedules.WarmupCosineLR" and sched.init_args.total_steps == cfg.trainer.max_steps
    params = [torch.nn.Parameter(torch.zeros(2))]
    conf = optimizers_and_schedule(params, lambda p: torch.optim.AdamW(p, lr=1e-4),
                                   lambda o: WarmupCosineLR(o, **vars(sched.init_args)))
    assert conf["lr_scheduler"]["interval"] == "step"
    with pytest.raises(ValueError, match="no trainable parameters"):
        optimizers_and_schedule([torch.nn.Parameter(torch.zeros(1), requires_grad=False)], torch.optim.AdamW)
