"""HFGIModule with a real Lightning Trainer: training lowers the loss, frozen parts stay frozen,
edit grids and predict PNGs, the tiny config through the CLI, and the Ranger optimizer."""
from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from callbacks.image_logger import ImageLogger
from lightning_modules.hfgi import HFGIModule
from optim import Ranger

TINY = dict(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, max_channels=16, fusion_layer=5, resolution=32)


class SmoothImages(Dataset):
    """Smooth colour patterns in [-1, 1] with keys (an in-memory stand-in for image shards)."""

    def __init__(self, n: int, size: int = 32) -> None:
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        self.images = [torch.stack([torch.sin(3 * xx + i), torch.cos(2 * yy - i), xx * yy]).clamp(-1, 1) for i in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "key": f"img{i:03d}"}


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.l2: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        self.l2.append(float(trainer.callback_metrics["train/l2"]))


def _trainer(tmp_path, steps: int, callbacks=(), **kw) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        **kw,
    )


def test_tiny_hfgi_trains_and_reconstruction_loss_falls(tmp_path):
    torch.manual_seed(0)
    module = HFGIModule(**TINY, lpips_pretrained_backbone=False, optimizer=partial(Ranger, lr=1e-3))
    enc_stats = {k: v.clone() for k, v in module.pipeline.encoder.state_dict().items()}
    gen_params = {k: v.clone() for k, v in module.pipeline.generator.state_dict().items()}
    ada_before = module.pipeline.aligner.conv_layer1[0].weight.clone()
    recorder = LossRecorder()
    logger = ImageLogger(max_images=2, nrow=2)
    trainer = _trainer(tmp_path, 16, [recorder, logger], limit_val_batches=1, val_check_interval=16, check_val_every_n_epoch=None)
    trainer.fit(module, DataLoader(SmoothImages(16), batch_size=2, shuffle=True), DataLoader(SmoothImages(2), batch_size=2))

    losses = recorder.losses
    assert len(losses) == 16
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses
    l2 = recorder.l2  # the reconstruction term itself falls, not only the alignment term
    assert sum(l2[-3:]) < 0.8 * sum(l2[:3]), l2
    for key in ("train/loss", "train/l2", "train/lpips", "train/align", "val/loss", "val/l2_e4e"):
        assert key in trainer.logged_metrics or key in trainer.callback_metrics, key
    # frozen = no gradient AND eval mode: e4e BatchNorm statistics and generator weights unchanged
    for k, v in module.pipeline.encoder.state_dict().items():
        torch.testing.assert_close(v, enc_stats[k], rtol=0, atol=0)
    for k, v in module.pipeline.generator.state_dict().items():
        torch.testing.assert_close(v, gen_params[k], rtol=0, atol=0)
    assert not torch.equal(module.pipeline.aligner.conv_layer1[0].weight, ada_before)
    assert not any(p.requires_grad for p in module.pipeline.encoder.parameters())
    # the ImageLogger wrote the inversion grid (input / e4e / HFGI rows)
    assert [p.name.split("_e")[0] for p in logger.last_paths] == ["inversion"]
    assert Image.open(logger.last_paths[0]).size[0] > 0


def test_encoder_bn_drift_option_lets_bn_statistics_move(tmp_path):
    torch.manual_seed(0)
    module = HFGIModule(**TINY, lpips_weight=0.0, encoder_bn_drift=True)
    before = module.pipeline.encoder.input_layer[1].running_mean.clone()
    _trainer(tmp_path, 1).fit(module, DataLoader(SmoothImages(2), batch_size=2))
    assert not torch.equal(module.pipeline.encoder.input_layer[1].running_mean, before)
    assert not any(p.requires_grad for p in module.pipeline.encoder.parameters())


def test_predict_writes_every_direction_and_degree_and_grids(tmp_path):
    n_styles = 8
    torch.save(torch.randn(1, 32), tmp_path / "age.pt")
    torch.save(torch.randn(1, n_styles, 32), tmp_path / "pose.pt")
    out_dir = tmp_path / "edits"
    module = HFGIModule(
        **TINY,
        lpips_weight=0.0,
        directions={"age": str(tmp_path / "age.pt"), "pose": str(tmp_path / "pose.pt")},
        degrees=[-2.0, 2.0],
        direction_degrees={"pose": [3.0]},
        predict_dir=str(out_dir),
    )
    batches = _trainer(tmp_path, 1).predict(module, DataLoader(SmoothImages(3), batch_size=2))
    written = sorted(p for batch in batches for p in batch)
    expected = sorted(
        str(out_dir / sub / f"img{i:03d}.png")
        for i in range(3)
        for sub in ("reconstruction", "age/-2", "age/+2", "pose/+3")
    )
    assert written == expected
    assert Image.open(expected[0]).size == (32, 32)
    grids = module.log_images({"image": SmoothImages(2)[0]["image"][None]})
    assert set(grids) == {"inversion", "edit_age", "edit_pose"}
    assert grids["inversion"].shape == (3, 3, 32, 32) and grids["edit_age"].shape == (3, 3, 32, 32)


def test_bad_direction_file_and_degree_names_fail_clearly(tmp_path):
    torch.save(torch.randn(1, 5, 32), tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad.pt: direction has shape \(1, 5, 32\)"):
        HFGIModule(**TINY, lpips_weight=0.0, directions={"age": str(tmp_path / "bad.pt")})
    with pytest.raises(ValueError, match="direction_degrees names \\['smile'\\]"):
        HFGIModule(**TINY, lpips_weight=0.0, direction_degrees={"smile": [1.0]})
    with pytest.raises(FileNotFoundError, match="e4e_ffhq_encode.pt"):
        HFGIModule(**TINY, lpips_weight=0.0, e4e_checkpoint=str(tmp_path / "missing.pt"))


def test_tiny_config_runs_through_the_cli(tmp_path, synthetic_shards):
    from main import cli_main

    cli_main(
        [
            "fit",
            "--config",
            "configs/hfgi/tiny.yaml",
            "--trainer.max_steps=2",
            "--trainer.val_check_interval=2",
            "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            f"--trainer.default_root_dir={tmp_path}",
            f"--data.init_args.train_shards={synthetic_shards.train}",
            f"--data.init_args.val_shards={synthetic_shards.val}",
            f"--data.init_args.class_list={synthetic_shards.class_list}",
            "--data.init_args.synthetic_dir=null",
            "--data.init_args.batch_size=2",
        ]
    )
    metrics = list(tmp_path.rglob("metrics.csv"))
    assert metrics and "val/loss" in metrics[0].read_text()


def test_ranger_equals_radam_plus_lookahead_and_converges():
    torch.manual_seed(0)
    target = torch.randn(6, 4)
    w = torch.nn.Parameter(torch.randn(6, 4))
    ref = torch.nn.Parameter(w.detach().clone())
    opt = Ranger([w], lr=0.05, k=3, alpha=0.5, use_gc=False)
    ref_opt = torch.optim.RAdam([ref], lr=0.05, betas=(0.95, 0.999), eps=1e-5)
    slow = ref.detach().clone()
    start = float(((w.detach() - target) ** 2).sum())
    for step in range(1, 301):
        for p, o in ((w, opt), (ref, ref_opt)):
            o.zero_grad()
            ((p - target) ** 2).sum().backward()
            o.step()
        if step % 3 == 0:  # explicit lookahead on the reference
            with torch.no_grad():
                slow += 0.5 * (ref - slow)
                ref.copy_(slow)
            torch.testing.assert_close(w.detach(), opt.state[w]["slow_buffer"])
        torch.testing.assert_close(w.detach(), ref.detach())
    assert float(((w.detach() - target) ** 2).sum()) < 0.1 * start
    clone = Ranger([torch.nn.Parameter(w.detach().clone())], lr=0.05, k=3, use_gc=False)
    clone.load_state_dict(opt.state_dict())
    assert "slow_buffer" in next(iter(clone.state.values()))
    with pytest.raises(ValueError, match="alpha"):
        Ranger([w], alpha=0.0)


def test_ranger_gradient_centralisation_removes_the_per_row_gradient_mean():
    w = torch.nn.Parameter(torch.zeros(3, 5))
    opt = Ranger([w], lr=0.1, use_gc=True)
    (w * torch.arange(15.0).view(3, 5)).sum().backward()
    opt.step()
    torch.testing.assert_close(w.grad.mean(dim=1), torch.zeros(3))
