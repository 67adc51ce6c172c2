"""Which prediction target, loss weighting and noise schedule make the C2F stages usable earliest?

Trains the coarsest C2F stage (one stage at ``--size`` px, the architecture of
``configs/c2f/synthetic_demo.yaml``'s stage 0) on the synthetic scenes with the real Trainer, once
per combination of prediction target (``epsilon``, ``v``, ``x0``) and loss weighting (uniform,
min-SNR-gamma 5), same data, seed, optimizer and step budget. At fixed optimizer steps it samples
the held-out scenes (dataset seed never used in training, key-seeded masks of the four LCG types)
with DDIM and guidance gain 1 (the plain conditional prediction: only the parameterisation
differs) and records the hole MAE. Reports, per combination, the hole MAE curve and the first
probed step at which the hole MAE drops below the mean-of-known-pixels fill and below 75 % of it.

``--schedules`` adds the pixel-space noise schedules (docs/schedules.md) as a second axis:
``scaled_linear`` (today), ``zero_terminal_snr`` (Lin et al. 2024 rescale + trailing DDIM steps; an
epsilon target is refused there and recorded as such) and ``shifted`` (simple-diffusion log-SNR
shift at ``--size``, base 64: identical to ``scaled_linear`` at 64 px, recorded as such).
``--samples K`` scores the hole MAE of the MEAN of K samples per scene (the posterior-mean error a
generative inpainter should be judged by) beside the mean single-sample MAE; ``--seed`` changes the
training seed (model init, data order, noise); ``--resume`` keeps the rows already in ``--out``
that were run with the same settings, so an interrupted study continues where it stopped (the
file is rewritten after every row).

    python benchmarks/convergence.py                      # about 35 min on a 2-core CPU
    python benchmarks/convergence.py --steps 300 --probes 100 200 300 --held-out 16   # quick look
    python benchmarks/convergence.py --device cuda --steps 5000   # larger, on a GPU

Prints a table and writes ``benchmarks/results/convergence.json`` and ``docs/figures/convergence.png``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402

from benchmarks.inpainting_study import eval_batch, save_figure, score, summarise, synthetic_sets, train_module  # noqa: E402
from evaluation.sample_metrics import sample_metrics  # noqa: E402
from evaluation.swd import swd  # noqa: E402
from inpainters.classical import MeanFillInpainter  # noqa: E402
from lightning_modules.c2f_diffusion import C2FDiffusionModule  # noqa: E402
from optim.schedules import WarmupCosineLR  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "convergence.json"
FIGURE = ROOT / "docs" / "figures" / "convergence.png"
COMBINATIONS = [(p, g) for p in ("epsilon", "v", "x0") for g in (None, 5.0)]
#: noise-schedule options of the C2F module per ``--schedules`` name (docs/schedules.md)
SCHEDULES = {
    "scaled_linear": {},
    "zero_terminal_snr": {"zero_terminal_snr": True, "timestep_spacing": "trailing"},
    "shifted": {"shift_base": 64},
}
STAGE0_UNET = {"channels": 32, "channel_mults": [1, 2, 2], "num_res_blocks": 1, "attention_levels": [2], "heads": 2,
               "norm_groups": 8}


class HoleErrorProbe(Callback):
    """Samples the held-out batch ``samples`` times at the given optimizer steps.

    ``curve``: mean single-sample hole MAE per probed step; ``mean_curve``: hole MAE of the mean of
    the samples (equal to ``curve`` for one sample); ``swd_curve``: patch SWD (7x7, Laplacian pyramid,
    hole patches; :func:`evaluation.swd.swd`) of all samples against the targets; ``per_image``: the last probe's per-scene MAE of
    the mean (for paired comparisons between variants).
    """

    def __init__(self, data, steps: list[int], ddim_steps: int, samples: int = 1) -> None:
        self.data, self.steps, self.ddim_steps, self.samples = data, set(steps), ddim_steps, samples
        self.curve: list[tuple[int, float]] = []
        self.mean_curve: list[tuple[int, float]] = []
        self.swd_curve: list[tuple[int, float]] = []
        self.per_image: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step not in self.steps or (self.curve and self.curve[-1][0] == step):
            return
        pl_module.eval()
        gen = torch.Generator(device=pl_module.device).manual_seed(0)
        dev = pl_module.device

        def fill(image, mask, category):
            return pl_module.inpaint(image.to(dev), mask.to(dev), category.to(dev), steps=[self.ddim_steps], gains=[1.0],
                                     generator=gen).cpu()

        fills = torch.stack([score(fill, self.data)[1] for _ in range(self.samples)])  # (K, N, 3, H, W)
        pl_module.train()
        metrics = sample_metrics(fills, self.data.image, self.data.mask)
        self.per_image = [float(v) for v in metrics["mae_mean_k"]]
        self.curve.append((step, float(torch.nanmean(metrics["mae_sample"]))))
        self.mean_curve.append((step, float(torch.nanmean(metrics["mae_mean_k"]))))
        k, n = fills.shape[:2]
        patch_swd = swd(fills.flatten(0, 1), self.data.image.repeat(k, 1, 1, 1), self.data.mask.repeat(k, 1, 1, 1))["swd"]
        self.swd_curve.append((step, patch_swd))
        print(f"    step {step:5d}: hole MAE {self.curve[-1][1]:.4f}, of the mean of {self.samples}: "
              f"{self.mean_curve[-1][1]:.4f}, patch SWD {patch_swd:.1f}", flush=True)


def build(prediction: str, gamma: float | None, size: int, lr: float, warmup: int, schedule: str = "scaled_linear",
          seed: int = 0) -> C2FDiffusionModule:
    """One-stage C2F module (the demo model's stage 0) with the given target, weighting and schedule option."""
    return C2FDiffusionModule(
        unets=[STAGE0_UNET], embedding={"tokens_per_category": 4, "dim": 32}, resolutions=[size],
        sampling_steps=[20], guidance_gains=[1.0], prediction=prediction, min_snr_gamma=gamma,
        degenerate_masks="warn", seed=seed, **SCHEDULES[schedule],
        optimizer=lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.0),
        lr_scheduler=lambda opt: WarmupCosineLR(opt, warmup_steps=warmup),
    )


def first_below(curve: list[tuple[int, float]], threshold: float) -> int | None:
    """First probed step with hole MAE below ``threshold`` (None: never within the budget)."""
    return next((step for step, mae in curve if mae < threshold), None)


def plot(rows: list[dict], baseline: float, path: Path) -> None:
    """Hole MAE vs optimizer steps, one line per combination, the mean-fill level dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for r in rows:
        steps, maes = zip(*r["curve"])
        ax.plot(steps, maes, marker="o", ms=3, label=r["label"], ls="-" if r["min_snr_gamma"] is None else "--")
    ax.axhline(baseline, color="gray", lw=1, ls=":", label="mean-of-known fill")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("held-out hole MAE ([-1, 1] scale)")
    ax.set_title("C2F stage 0: convergence by prediction target")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def label_of(schedule: str, prediction: str, gamma: float | None) -> str:
    """Row label: ``v+minsnr5``, ``epsilon`` ... (prefixed by the schedule unless ``scaled_linear``)."""
    label = prediction + ("+minsnr5" if gamma else "")
    return label if schedule == "scaled_linear" else f"{schedule}/{label}"


def skip_reason(schedule: str, prediction: str, size: int) -> str | None:
    """Why a combination is not trained: undefined (refused by the denoiser) or identical to another row."""
    if schedule == "zero_terminal_snr" and prediction == "epsilon":
        return "refused: epsilon is undefined at zero terminal SNR (x0 = (x_t - sqrt(1 - a) eps) / sqrt(a), a = 0)"
    if schedule == "shifted" and size == SCHEDULES["shifted"]["shift_base"]:
        return f"identical to scaled_linear at {size} px: shift 2 log(64 / {size}) = 0"
    return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32, help="stage resolution in pixels")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per combination")
    parser.add_argument("--probes", type=int, nargs="+", default=[100, 200, 400, 700, 1000, 1500, 2000],
                        help="optimizer steps at which the held-out set is sampled")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    parser.add_argument("--train-images", type=int, default=2000, help="training scenes")
    parser.add_argument("--held-out", type=int, default=64, help="held-out scenes scored at every probe")
    parser.add_argument("--ddim-steps", type=int, default=20, help="DDIM steps of the probe")
    parser.add_argument("--samples", type=int, default=1, help="samples per held-out scene (MAE of their mean is scored)")
    parser.add_argument("--schedules", nargs="+", default=["scaled_linear"], choices=sorted(SCHEDULES),
                        help="noise-schedule options to cross with the targets (docs/schedules.md)")
    parser.add_argument("--only", nargs="*", default=None, help="combinations to run, e.g. v x0+minsnr")
    parser.add_argument("--seed", type=int, default=0, help="training seed (init, data order, noise)")
    parser.add_argument("--resume", action="store_true", help="keep the rows of --out run with the same settings")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "studies"), help="where the synthetic sets go")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--out", default=str(RESULTS), help="JSON result file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    probes = sorted(p for p in args.probes if p <= args.steps)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "data_dir", "resume", "only", "schedules", "threads")}
    out = Path(args.out)
    done: dict[str, dict] = {}
    if args.resume and out.is_file():
        previous = json.loads(out.read_text())
        if previous.get("settings_key") == settings:
            done = {r["label"]: r for r in previous["rows"]}
            print(f"resuming: {len(done)} rows kept from {out}", flush=True)
        else:
            print(f"not resuming: {out} was run with other settings", flush=True)
    train_glob, val_glob, test_glob = synthetic_sets(Path(args.data_dir), args.size, args.train_images, args.held_out)
    data = eval_batch(test_glob, args.size, args.held_out)
    baseline = summarise(score(lambda i, m, c: MeanFillInpainter()(i, m), data)[0])["hole_mae"]
    print(f"mean-of-known fill: hole MAE {baseline:.4f} on {data.image.shape[0]} held-out scenes", flush=True)
    result = {
        "benchmark": "convergence", "command": "python benchmarks/convergence.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "data_dir")}, "settings_key": settings,
        "unet": STAGE0_UNET, "mean_fill_hole_mae": baseline, "torch": torch.__version__, "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%d"), "rows": [],
    }
    rows = result["rows"]
    for schedule in args.schedules:
        for prediction, gamma in COMBINATIONS:
            label = label_of(schedule, prediction, gamma)
            short = label_of("scaled_linear", prediction, gamma)
            if args.only and short not in args.only and short.replace("5", "") not in args.only:
                continue
            if label in done:
                rows.append(done[label])
                continue
            base = {"label": label, "schedule": schedule, "prediction": prediction, "min_snr_gamma": gamma}
            reason = skip_reason(schedule, prediction, args.size)
            if reason is not None:
                print(f"{label}: {reason}", flush=True)
                rows.append({**base, "skipped": reason, "curve": []})
            else:
                print(f"{label}:", flush=True)
                torch.manual_seed(args.seed)
                module = build(prediction, gamma, args.size, args.lr, args.warmup, schedule, args.seed)
                probe = HoleErrorProbe(data, probes, args.ddim_steps, args.samples)
                seconds = train_module(module, train_glob, val_glob, args.size, args.steps, args.batch_size, seed=args.seed,
                                       callbacks=[probe])
                rows.append({
                    **base, "curve": probe.curve, "mean_of_samples_curve": probe.mean_curve, "swd_curve": probe.swd_curve,
                    "final_per_image_mae_of_mean": probe.per_image, "train_seconds": round(seconds, 1),
                    "steps_below_mean_fill": first_below(probe.curve, baseline),
                    "steps_below_75pct_mean_fill": first_below(probe.curve, 0.75 * baseline),
                    "final_hole_mae": probe.curve[-1][1] if probe.curve else None,
                    "final_mae_of_mean": probe.mean_curve[-1][1] if probe.mean_curve else None,
                    "final_swd": probe.swd_curve[-1][1] if probe.swd_curve else None,
                })
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))  # after every row: --resume continues from here
    print(f"\n{'combination':34} {'< mean fill':>12} {'< 0.75 mean':>12} {'final MAE':>10} {'of mean':>8} {'train s':>8}")
    for r in rows:
        if r.get("skipped"):
            print(f"{r['label']:34} {r['skipped']}")
            continue
        cell = lambda v: "-" if v is None else str(v)  # noqa: E731
        num = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"{r['label']:34} {cell(r['steps_below_mean_fill']):>12} {cell(r['steps_below_75pct_mean_fill']):>12} "
              f"{num(r['final_hole_mae']):>10} {num(r.get('final_mae_of_mean')):>8} {r['train_seconds']:>8.0f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    trained = [r for r in rows if r.get("curve")]
    if trained:
        plot(trained, baseline, FIGURE if args.out == str(RESULTS) else out.with_suffix(".png"))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
