"""Peer baseline: a standard HuggingFace diffusers inpainter against our single-stage C2F variant (same parameters, FLOPs, batches).

Does our diffusion machinery learn at least as fast as the library most people use (issue 21, section 4)? The peer is
the textbook concat inpainter built from ``diffusers`` parts only:

- network: ``diffusers.UNet2DModel`` with ``in_channels=7`` (noisy image 3 + masked image 3 + mask 1) and
  ``out_channels=3``, widths :data:`PEER_UNET` chosen so its parameter count is within 10 % of our single-stage
  denoiser's (``benchmarks/quality.py``: one C2F stage at 64 px, ``UNETS[1]``) and its training FLOPs per step close;
- training: the library's objective: ``DDPMScheduler`` (default ``linear`` betas, 1000 steps), ``add_noise``, target
  epsilon (``--prediction epsilon``) or v (``--prediction v_prediction``, ``scheduler.get_velocity``), plain MSE;
- sampling: ``DDIMScheduler.from_config`` of that DDPM config (library defaults: ``leading`` spacing, x0 clipping,
  eta 0) at the same number of U-Net calls as our single-stage variant (``quality.single_stage_steps``), the known
  pixels pasted back (forward-noised to the next timestep) after every step and exactly at the end.

Everything else is shared with our variant and taken from ``benchmarks/quality.py`` / ``benchmarks/inpainting_study.py``:
the same training batches (``train_module``: the real Trainer on the same ShardDataModule stream, seed, batch size
and steps; checked by a digest of every batch), the same AdamW learning rate and warm-up-cosine schedule (the
factories of ``quality.build``), the same EMA callback, and the same scoring of fills on the held-out cases (SWD of the
fills, removal residue, MAE of the mean of ``--k`` samples, one-sample MAE, texture ratio; per mask type and hole-area
bin), ``--seeds`` seeds, mean and spread. Our variant trains exactly as in quality.py (its boundary-loss callback,
guidance gains tuned on the validation scenes). The peer has no category input: it fills foreground-object holes
without being told to draw an object.

Also measured on one fixed training batch, same thread count: training FLOPs per step of both models
(``torch.utils.flop_counter``), seconds per training step (median of ``--time-steps`` after ``--warmup-steps``; forward,
loss, backward, AdamW, schedule) and a ``torch.profiler`` breakdown of one step of each (data, forward blocks, loss
callbacks, backward, optimizer; top ops by self CPU time, op families).

    python benchmarks/peer_diffusers.py --steps 767 --seeds 3 --held-out 256      # the real comparison (CPU, hours)
    python benchmarks/peer_diffusers.py --steps 30 --seeds 1 --held-out 8 --threads 1   # a quick check

Writes ``benchmarks/results/peer_diffusers.json`` and prints a short table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lightning.pytorch import Callback, LightningModule  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.inpainting_study import (  # noqa: E402
    HELD_OUT_SEED, TRAIN_SEED, held_out_cases, mean_and_spread, synthetic_sets, train_module,
)
from benchmarks.quality import (  # noqa: E402
    FIGURES, GAIN_GRID, SAMPLING, TRAINED, UNETS, build, evaluate, loss_callbacks, sampler, single_stage_steps,
    training_flops, tune_gains,
)
from callbacks.ema import EMA  # noqa: E402
from datamodules.shard_datamodule import ShardDataModule  # noqa: E402
from optim.schedules import optimizers_and_schedule  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "peer_diffusers.json"
OURS = "single stage"  #: our variant (quality.py's name)
VARIANT = TRAINED[OURS]
QUALITY_STEPS = 1000  #: quality.py's default two-stage steps (the default --steps is its single-stage equivalent)
#: the peer U-Net (``diffusers.UNet2DModel`` keyword arguments besides the channels): our variant's layout (4 levels,
#: 1 block per level, self-attention at the lowest level and in the middle, 2 heads, GroupNorm 8), widths
#: ``--peer-channels`` (default: ours, the 8 px level widened to make up for our cross-attention blocks'
#: parameters: 977k vs 959k parameters)
PEER_UNET: dict[str, Any] = {
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
    "attention_head_dim": 28,
}
PEER_CHANNELS = [24, 48, 48, 56]
PREDICTIONS = ("epsilon", "v_prediction")
EMA_ARGS = {"decay": 0.995, "warmup": True}  # as quality.py trains every variant


def count_params(module: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def ours_denoiser(module) -> torch.nn.Module:
    """The (only) stage denoiser of the single-stage C2F module: the part whose size the peer matches."""
    return module.model.stages[0]


class PeerDiffusersModule(LightningModule):
    """A standard diffusers concat inpainter: ``UNet2DModel([x_t, image * (1 - mask), mask], t)``, ``DDPMScheduler``
    training objective, ``DDIMScheduler`` sampling with paste-back.

    Args:
        channels: ``block_out_channels`` of the U-Net (one per level of :data:`PEER_UNET`).
        prediction: ``epsilon`` or ``v_prediction`` (the scheduler's ``prediction_type``).
        sampling_steps: DDIM steps of :meth:`inpaint`.
        optimizer: optimizer factory (use our variant's, ``module.optimizer_factory``, for the same AdamW).
        lr_scheduler: learning-rate schedule factory, stepped every optimizer step (ours: warm-up cosine).
        size: ``sample_size`` of the U-Net config (informative only).
    """

    def __init__(self, channels: Sequence[int], prediction: str, sampling_steps: int,
                 optimizer: Callable, lr_scheduler: Callable | None, size: int = 64) -> None:
        super().__init__()
        from diffusers import DDPMScheduler, UNet2DModel

        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.unet = UNet2DModel(sample_size=size, in_channels=7, out_channels=3, block_out_channels=tuple(channels),
                                **{k: tuple(v) if isinstance(v, list) else v for k, v in PEER_UNET.items()})
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction)  # linear betas
        self.prediction, self.sampling_steps = prediction, int(sampling_steps)
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler

    def loss(self, batch: dict) -> torch.Tensor:
        """The library's objective: ``add_noise`` at uniform timesteps, MSE to epsilon or ``get_velocity``."""
        image, mask = batch["image"], batch["mask"].to(batch["image"].dtype)
        noise = torch.randn_like(image)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (image.shape[0],), device=image.device)
        noisy = self.noise_scheduler.add_noise(image, noise, t)
        target = noise if self.prediction == "epsilon" else self.noise_scheduler.get_velocity(image, noise, t)
        pred = self.unet(torch.cat([noisy, image * (1 - mask), mask], dim=1), t).sample
        return F.mse_loss(pred.float(), target.float())

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        return optimizers_and_schedule(self.parameters(), self.optimizer_factory, self.lr_scheduler_factory)

    @torch.no_grad()
    def inpaint(self, image: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """DDIM fill of ``image`` where ``mask > 0.5``; known pixels are pasted back (forward-noised to the next
        timestep) after every step and exactly at the end, so they equal ``image`` bit for bit."""
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(self.noise_scheduler.config)
        scheduler.set_timesteps(int(steps or self.sampling_steps))
        ts = scheduler.timesteps.to(image.device)
        hole = mask > 0.5
        m = hole.to(image.dtype)
        masked = image * (1 - m)

        def randn() -> torch.Tensor:
            return torch.randn(image.shape, generator=generator, dtype=image.dtype).to(image.device)

        x = torch.where(hole, randn() * scheduler.init_noise_sigma, scheduler.add_noise(image, randn(), ts[:1]))
        for i, t in enumerate(ts):
            out = self.unet(torch.cat([x, masked, m], dim=1), t).sample
            x = scheduler.step(out, t, x, eta=0.0, generator=generator).prev_sample
            if i + 1 < len(ts):
                x = torch.where(hole, x, scheduler.add_noise(image, randn(), ts[i + 1:i + 2]))
        return torch.where(hole, x, image)


def peer_sampler(peer: PeerDiffusersModule, seed: int):
    """``fill(image, mask, category)`` sampling the peer with a fixed seed (the category is ignored: no input for it)."""
    gen = torch.Generator().manual_seed(seed)

    def fill(image, mask, category):
        return peer.inpaint(image, mask, generator=gen)

    return fill


def peer_training_flops(peer: PeerDiffusersModule, batch: dict) -> float:
    """FLOPs of one peer training step (forward + backward), as :func:`benchmarks.quality.training_flops` counts ours."""
    with FlopCounterMode(display=False) as counter:
        peer.loss(batch).backward()
    peer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


class BatchDigest(Callback):
    """Records a digest of every training batch (image and mask bytes), to check two runs read the same data."""

    def __init__(self) -> None:
        self.digests: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        h = hashlib.sha1(batch["image"].detach().cpu().numpy().tobytes())
        h.update(batch["mask"].detach().cpu().numpy().tobytes())
        self.digests.append(h.hexdigest()[:16])


# ------------------------------------------------------------------ time per step and profile
def _with_loss_terms(module, callbacks: Sequence[Any], label: bool = False):
    """Register the variant's loss-term callbacks on ``module`` as the Trainer would (each ``compute`` wrapped in a
    profiler label when ``label``)."""
    for cb in callbacks:
        if hasattr(cb, "compute") and hasattr(module, "register_loss_term"):
            if label:
                compute = cb.compute

                def labelled(ctx, compute=compute, name=cb.name):
                    with record_function(f"loss callback: {name}"):
                        return compute(ctx)

                cb.compute = labelled
            module.register_loss_term(cb)
    return module


def _optimizer(module) -> tuple[torch.optim.Optimizer, Any]:
    conf = module.configure_optimizers()
    if isinstance(conf, dict):
        return conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    return conf, None


def training_step_fn(module) -> Callable[[dict], None]:
    """One optimizer step as the Trainer runs it, without Lightning: zero grad, ``training_step`` (loss terms
    included), backward, AdamW step, schedule step; each part labelled for the profiler."""
    opt, sched = _optimizer(module)
    module.train()

    def step(batch: dict) -> None:
        opt.zero_grad(set_to_none=True)
        with record_function("forward + loss"):
            loss = module.training_step(batch, 0)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer (AdamW + schedule)"):
            opt.step()
            if sched is not None:
                sched.step()

    return step


def seconds_per_step(step: Callable[[dict], None], batch: dict, warmup: int, timed: int) -> list[float]:
    """Wall seconds of ``timed`` steps on ``batch`` after ``warmup`` untimed ones."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        for i in range(warmup + timed):
            start = time.perf_counter()
            step(batch)
            if i >= warmup:
                out.append(time.perf_counter() - start)
    return out


def _block_labels(module: torch.nn.Module) -> list:
    """Forward hooks labelling every U-Net block (res block, self-attention, cross-attention, resampling) for the
    profiler; returns the hook handles."""
    from networks.c2f.unet import CrossAttentionBlock, Downsample, ResBlock, SelfAttentionBlock, Upsample

    kinds: list[tuple[type, str]] = [(ResBlock, "res blocks"), (SelfAttentionBlock, "self-attention blocks"),
                                     (CrossAttentionBlock, "cross-attention blocks (LCG tokens)"),
                                     (Downsample, "down/upsampling"), (Upsample, "down/upsampling")]
    try:
        from diffusers.models.attention_processor import Attention
        from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

        kinds += [(ResnetBlock2D, "res blocks"), (Attention, "self-attention blocks"),
                  (Downsample2D, "down/upsampling"), (Upsample2D, "down/upsampling")]
    except ImportError:  # pragma: no cover - the peer needs diffusers anyway
        pass
    handles = []
    for sub in module.modules():
        label = next((name for cls, name in kinds if isinstance(sub, cls)), None)
        if label is None:
            continue
        rf: list = []

        def pre(mod, args, label=label, rf=rf):
            rf.append(record_function(f"forward: {label}"))
            rf[-1].__enter__()

        def post(mod, args, output, rf=rf):
            rf.pop().__exit__(None, None, None)

        handles += [sub.register_forward_pre_hook(pre), sub.register_forward_hook(post)]
    return handles


#: op families of the profile (first match of a substring of the lower-case op name); ``other ops`` is the rest
#: (elementwise arithmetic, copies, reductions, allocation) and ``Python / framework overhead`` the self time of the
#: labelled regions (time spent between ops: interpreter, autograd engine, profiler)
FAMILIES = (
    ("convolution", ("conv",)), ("group norm", ("group_norm",)), ("layer norm", ("layer_norm",)),
    ("attention (softmax, bmm, SDPA)", ("softmax", "bmm", "scaled_dot_product", "einsum", "attention")),
    ("linear / matmul", ("addmm", "aten::mm", "matmul", "linear")), ("SiLU", ("silu",)),
    ("resampling / padding", ("upsample", "pool", "interpolate", "unfold", "pad")),
)
REGIONS = ("data: next training batch", "forward + loss", "backward", "optimizer (AdamW + schedule)")


def _is_label(key: str) -> bool:
    """A region label (ours, or one the profiler adds itself, e.g. ``Optimizer.step#AdamW.step``), not an op."""
    return (key in REGIONS or key.startswith(("forward: ", "loss callback: ", "ProfilerStep", "enumerate(DataLoader)"))
            or "#" in key or key.startswith("autograd::engine::evaluate_function"))


def profile_step(module, stream: Callable[[], Any], callbacks: Sequence[Any], warmup: int, top: int = 15) -> dict:
    """``torch.profiler`` breakdown of one training step of ``module`` (after ``warmup`` steps), the batch fetched
    from ``stream`` inside the profile: regions (data, forward blocks, loss callbacks, backward, optimizer; CPU time
    including children), top ops by self CPU time, op families."""
    _with_loss_terms(module, callbacks, label=True)
    step = training_step_fn(module)
    handles = _block_labels(module)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = stream()
            for _ in range(warmup):
                step(batch)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                with record_function("data: next training batch"):
                    batch = stream()
                step(batch)
    finally:
        for h in handles:
            h.remove()
    events = prof.key_averages()
    labels = [e for e in events if _is_label(e.key)]
    ops = [e for e in events if not _is_label(e.key)]
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    families: dict[str, float] = {"Python / framework overhead": sum(e.self_cpu_time_total for e in labels) / 1e6}
    for e in ops:
        name = e.key.lower()
        family = next((f for f, keys in FAMILIES if any(k in name for k in keys)), "other ops")
        families[family] = families.get(family, 0.0) + e.self_cpu_time_total / 1e6
    top_ops = sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    shown = [e for e in labels if not e.key.startswith("autograd::engine")]
    return {
        "total_self_cpu_s": total,
        "regions_s": {e.key: e.cpu_time_total / 1e6 for e in sorted(shown, key=lambda e: -e.cpu_time_total)},
        "families_s": dict(sorted(families.items(), key=lambda kv: -kv[1])),
        "top_ops": [{"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "calls": e.count,
                     "share": (e.self_cpu_time_total / 1e6) / total if total else float("nan")} for e in top_ops],
    }


def _train_stream(train_glob: str, val_glob: str, size: int, batch_size: int, steps: int):
    """``next batch`` of a fresh seed-0 training stream (the batches train_module's first steps read)."""
    dm = ShardDataModule(train_shards=train_glob, val_shards=val_glob, resolution=size, batch_size=batch_size,
                         num_workers=0, samples_per_epoch=batch_size * steps, seed=0)
    dm.setup("fit")

    def fresh() -> Callable[[], dict]:
        it = iter(dm.train_dataloader())
        return lambda: next(it)

    return fresh


def measure(models: dict[str, Callable[[], Any]], loss_terms: Callable[[str], list], stream, warmup: int,
            timed: int) -> dict:
    """FLOPs per step, seconds per step and a profile of every model: fresh instances (seed 0), the same training
    batch (the stream's first), the same thread count; the timed steps of the models alternate, so a change of the
    machine's load hits all of them alike."""
    batch = stream()()
    flops, steps, times = {}, {}, {}
    for name, make in models.items():
        torch.manual_seed(0)
        module = make()
        if isinstance(module, PeerDiffusersModule):
            flops[name] = peer_training_flops(module, batch)
        else:
            flops[name] = float(training_flops(module, batch))  # quality.py's count (its loss callbacks not included)
        torch.manual_seed(0)
        steps[name] = training_step_fn(_with_loss_terms(make(), loss_terms(name)))
    for i in range(warmup + timed):
        for name, step in steps.items():
            seconds = seconds_per_step(step, batch, 0, 1)[0]
            if i >= warmup:
                times.setdefault(name, []).append(seconds)
    out: dict[str, dict] = {}
    for name, make in models.items():
        torch.manual_seed(0)
        prof = profile_step(make(), stream(), loss_terms(name), warmup)
        out[name] = {"flops_per_step": flops[name], "flops_per_sample": flops[name] / batch["image"].shape[0],
                     "seconds_per_step": statistics.median(times[name]), "seconds_per_step_all": times[name],
                     "profile": prof}
    return out


# ------------------------------------------------------------------ main
def default_steps(prediction: str, lr: float) -> int:
    """quality.py's single-stage steps for its default two-stage steps: the same training FLOPs, counted as its main
    counts them (``quality.training_flops`` on its first 4 held-out cases at 64 px)."""
    cases = held_out_cases(4, 64, HELD_OUT_SEED, "test")
    batch = {"image": cases.image, "mask": cases.mask, "category": cases.category}
    two = training_flops(build({}, prediction, lr, QUALITY_STEPS), batch)
    one = training_flops(build(VARIANT, prediction, lr, QUALITY_STEPS), batch)
    return max(1, round(QUALITY_STEPS * two / one))


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def seed_table(per_seed: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean and sample standard deviation over the seeds of every figure, per model."""
    return {name: {**{k: mean_and_spread([r[k] for r in runs]) for k in (*FIGURES, "trainer_seconds_per_step")},
                   "runs": len(runs)} for name, runs in per_seed.items()}


def merge(files: Sequence[str], out: Path, argv: list[str] | None) -> dict:
    """One result from runs of other seeds (``--first-seed``): their settings must agree but for the seeds; the speed
    figures and the profile are the first file's."""
    parts = [json.loads(Path(f).read_text()) for f in files]
    ignore = ("seeds", "first_seed", "merge", "threads")
    base = {k: v for k, v in parts[0]["settings"].items() if k not in ignore}
    for f, part in zip(files, parts):
        other = {k: v for k, v in part["settings"].items() if k not in ignore}
        if other != base:
            raise SystemExit(f"--merge: {f} was run with other settings ({other}) than {files[0]} ({base})")
    seeds = [r["seed"] for part in parts for r in part["per_seed"][OURS]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--merge: the files repeat seeds ({sorted(seeds)}); run each seed once (--first-seed)")
    result = dict(parts[0])
    result["per_seed"] = {n: [r for part in parts for r in part["per_seed"][n]] for n in parts[0]["per_seed"]}
    result["case_tables"] = {n: [t for part in parts for t in part["case_tables"][n]] for n in parts[0]["case_tables"]}
    result["table"] = seed_table(result["per_seed"])
    result["same_batches"] = all(part["same_batches"] for part in parts)
    result["settings"] = {**parts[0]["settings"], "seeds": len(seeds), "first_seed": min(seeds)}
    result["merged_from"] = [part["command"] for part in parts]
    result["command"] = "python benchmarks/peer_diffusers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["wall_seconds"] = max(part["wall_seconds"] for part in parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"merged seeds {sorted(seeds)} of {len(files)} files into {_shown(out)}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps of both models (default: quality.py's single-stage steps for its default "
                             f"{QUALITY_STEPS} two-stage steps, counted from FLOPs: 767 on the current architectures)")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per model (data order, masks, noise, init)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="first training seed (seeds first..first+seeds-1): run seeds in parallel processes, then --merge")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="combine result files of the same settings but other seeds into --out (nothing is trained)")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size (both models)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (both; warm-up cosine as quality.py)")
    parser.add_argument("--prediction", nargs="+", choices=PREDICTIONS, default=["epsilon"],
                        help="peer training target(s): epsilon, v_prediction (scheduler.get_velocity), or both")
    parser.add_argument("--ours-prediction", default="v", help="prediction target of our variant (quality.py's --prediction)")
    parser.add_argument("--size", type=int, default=64, help="image size in px of training and held-out scenes")
    parser.add_argument("--train-images", type=int, default=2000, help="training scenes")
    parser.add_argument("--held-out", type=int, default=64, help="held-out scenes scored per model and seed")
    parser.add_argument("--val-images", type=int, default=20, help="validation scenes used to tune our guidance gains")
    parser.add_argument("--k", type=int, default=4, help="samples per case (MAE of the mean of K; gain tuning uses 2)")
    parser.add_argument("--sampling-steps", type=int, nargs=2, default=SAMPLING,
                        help="quality.py's DDIM steps of its two stages; both models here get the single stage's "
                             "equivalent (a 32 px call counts a quarter: 20 10 -> 15 U-Net calls)")
    parser.add_argument("--gain-grid", type=float, nargs="+", default=GAIN_GRID, help="guidance gains tried for our variant")
    parser.add_argument("--peer-channels", type=int, nargs=4, default=PEER_CHANNELS,
                        help="block_out_channels of the diffusers UNet2DModel (4 levels)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed training steps before timing / profiling")
    parser.add_argument("--time-steps", type=int, default=10, help="timed training steps per model (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads), the same for both")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "studies"), help="where the synthetic sets go")
    parser.add_argument("--out", default=str(RESULTS), help="JSON result file")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out), argv)
    import diffusers

    out = Path(args.out)
    torch.set_num_threads(args.threads)
    start_all = time.perf_counter()
    size = args.size
    data = held_out_cases(args.held_out, size, HELD_OUT_SEED, "test")
    val = held_out_cases(args.val_images, size, TRAIN_SEED, "val")  # validation scenes of the training set's seed
    steps = args.steps if args.steps is not None else default_steps(args.ours_prediction, args.lr)
    train_glob, val_glob, _ = synthetic_sets(Path(args.data_dir), size, args.train_images, args.held_out)
    ddim_steps = single_stage_steps(args.sampling_steps)

    def make_ours():
        return build(VARIANT, args.ours_prediction, args.lr, steps, args.sampling_steps)

    def make_peer(prediction: str):
        def make():
            ours = make_ours()  # its AdamW and warm-up-cosine factories: the same optimizer and schedule
            return PeerDiffusersModule(args.peer_channels, prediction, ddim_steps, ours.optimizer_factory,
                                       ours.lr_scheduler_factory, size)
        return make

    names = {p: f"diffusers {p}" for p in args.prediction}
    makers: dict[str, Callable[[], Any]] = {OURS: make_ours, **{names[p]: make_peer(p) for p in args.prediction}}

    def loss_terms(name: str) -> list:  # fresh loss-term callbacks of a model (quality.py's for ours, none for the peer)
        return loss_callbacks(VARIANT) if name == OURS else []

    params = {n: count_params(ours_denoiser(m()) if n == OURS else m().unet) for n, m in makers.items()}
    ratios = {n: params[n] / params[OURS] for n in params}
    print("parameters: " + ", ".join(f"{n} {p:,}" + ("" if n == OURS else f" ({ratios[n] - 1:+.1%})")
                                      for n, p in params.items()), flush=True)
    for n, r in ratios.items():
        if abs(r - 1) > 0.10:
            print(f"WARNING: {n} has {r - 1:+.1%} parameters vs ours (outside +-10 %); change --peer-channels", flush=True)

    stream = _train_stream(train_glob, val_glob, size, args.batch_size, steps)
    speed = measure(makers, loss_terms, stream, args.warmup_steps, args.time_steps)
    for n, s in speed.items():
        print(f"{n}: {s['flops_per_step'] / 1e9:.2f} GFLOP/step, {s['seconds_per_step']:.3f} s/step "
              f"(median of {args.time_steps}, {torch.get_num_threads()} threads)", flush=True)

    per_seed: dict[str, list[dict]] = {n: [] for n in makers}
    case_tables: dict[str, list] = {n: [] for n in makers}
    digests: dict[str, list[list[str]]] = {n: [] for n in makers}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name, make in makers.items():
            torch.manual_seed(seed)
            module = make()
            digest = BatchDigest()
            seconds = train_module(module, train_glob, val_glob, size, steps, args.batch_size, seed,
                                   callbacks=[*loss_terms(name), EMA(**EMA_ARGS), digest])
            module.eval()
            row: dict[str, Any] = {"train_seconds": seconds, "trainer_seconds_per_step": seconds / steps, "steps": steps}
            if name == OURS:
                gains = tune_gains(module, val, True, args.gain_grid, k=min(2, args.k))
                fill = sampler(module, gains, 100 + seed)
                row["gains"] = gains
            else:
                fill = peer_sampler(module, 100 + seed)
            figures, table, _ = evaluate(fill, data, args.k)
            per_seed[name].append({**figures, **row})
            case_tables[name].append(table)
            digests[name].append(digest.digests)
            print(f"{name} seed {seed}: " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items())
                  + f"  train {seconds:.0f} s", flush=True)
    same_batches = all(digests[n][s] == digests[OURS][s] for n in makers for s in range(args.seeds))
    for name in makers:
        for seed, row in zip(range(args.first_seed, args.first_seed + args.seeds), per_seed[name]):
            row["seed"] = seed
    table = seed_table(per_seed)
    models = {
        OURS: {"params": params[OURS], "unet": UNETS[1], "prediction": args.ours_prediction, "ddim_steps": ddim_steps,
               "note": "quality.py's single-stage variant: C2F stage at 64 px, LCG cross-attention, min-SNR v loss, "
                       "boundary-loss callback, guidance gain tuned on validation (a gain != 1 doubles the batch of "
                       "each of its U-Net calls)"},
        **{names[p]: {"params": params[names[p]], "unet": {"block_out_channels": args.peer_channels, **PEER_UNET,
                                                           "in_channels": 7, "out_channels": 3},
                      "scheduler": "DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear', prediction_type="
                                   f"'{p}'); sampling DDIMScheduler.from_config (leading spacing, clip_sample, eta 0)",
                      "prediction": p, "ddim_steps": ddim_steps} for p in args.prediction},
    }
    result = {
        "benchmark": "peer_diffusers",
        "command": "python benchmarks/peer_diffusers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("data_dir", "out")}, "steps": steps},
        "models": models, "param_ratio_to_ours": ratios,
        "flops_per_step": {n: s["flops_per_step"] for n, s in speed.items()},
        "flops_per_sample": {n: s["flops_per_sample"] for n, s in speed.items()},
        "flops_ratio_to_ours": {n: s["flops_per_step"] / speed[OURS]["flops_per_step"] for n, s in speed.items()},
        "flops_batch": "the first training batch (--batch-size scenes), forward + backward, torch.utils.flop_counter "
                       "(quality.training_flops for ours: its loss callbacks not counted)",
        "seconds_per_step": {n: s["seconds_per_step"] for n, s in speed.items()},
        "seconds_per_step_all": {n: s["seconds_per_step_all"] for n, s in speed.items()},
        "timing": {"batch_size": args.batch_size, "threads": torch.get_num_threads(), "warmup_steps": args.warmup_steps,
                   "timed_steps": args.time_steps, "what": "zero_grad, training_step (loss callbacks included), backward, "
                   "AdamW step, schedule step on one fixed training batch; no Lightning, no data loading, no EMA"},
        "profile": {n: s["profile"] for n, s in speed.items()},
        "same_batches": same_batches, "table": table, "per_seed": per_seed, "case_tables": case_tables,
        "wall_seconds": round(time.perf_counter() - start_all), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "machine": platform.platform(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{'model':24} {'params':>9} {'GFLOP/step':>10} {'s/step':>7} " + " ".join(f"{k:>16}" for k in FIGURES))
    for name in makers:
        t = table[name]
        print(f"{name:24} {params[name]:>9,} {speed[name]['flops_per_step'] / 1e9:>10.2f} "
              f"{speed[name]['seconds_per_step']:>7.3f} " + " ".join(f"{t[k][0]:>8.4f}±{t[k][1]:<7.4f}" for k in FIGURES))
    for name in makers:
        prof = speed[name]["profile"]
        print(f"\nprofile of one {name} step ({prof['total_self_cpu_s']:.3f} s self CPU): "
              + ", ".join(f"{k} {v:.3f}" for k, v in prof["regions_s"].items() if "#" not in k and "(DataLoader)" not in k))
        print("  families: " + ", ".join(f"{k} {v:.3f}" for k, v in prof["families_s"].items()))
        print("  top ops: " + ", ".join(f"{o['op']} {o['self_cpu_s']:.3f}" for o in prof["top_ops"][:8]))
    print(f"same training batches: {same_batches}; wrote {_shown(out)} in {result['wall_seconds']} s")
    return result


if __name__ == "__main__":
    main()
