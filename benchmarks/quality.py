"""Ablation study: does every part of the C2F method help, at a scale anyone can rerun on a CPU?

Trains and evaluates, on the same synthetic scenes, seeds and training compute per variant:

- ``full``: two C2F stages (32 -> 64 px) with the guidance combiner, LCG tokens, the boundary and
  upsampling-consistency loss callbacks, per-stage guidance gains tuned on the validation split;
- ``paste-only combiner``: the combiner replaced by pasting the known pixels (``combiner=paste``);
- ``single stage``: one stage at 64 px trained with the same number of training FLOPs (counted with
  ``torch.utils.flop_counter``) and sampled with the same number of 64 px network evaluations;
- ``no LCG``: one shared token set (``lcg=false``; guidance then has nothing to contrast);
- ``gain 1``: the full model sampled with guidance gain 1 at every stage instead of the tuned gains;
- ``no boundary loss`` / ``no consistency loss``: the full model without that loss callback;
- baselines that need no training: mean fill, harmonic (Laplace) fill, OpenCV Telea.

Every trained variant runs with ``--seeds`` seeds (training seed = data order, masks, init); the
held-out cases (dataset seed never used in training; every mask type and object removal scored against the
clean plate, ``benchmarks.inpainting_study.held_out_cases``) are the same for all. Metrics per variant (mean and
spread over seeds; docs/evaluation.md): SWD of the fills in the holes, removal residue, MAE of the mean of ``--k``
samples and of one sample, seam error, texture ratio. Gains are tuned on validation scenes by the selection rule
of docs/results.md (realism and removal, MAE of the mean of K as tie-breaker; never one sample's MAE).

    python benchmarks/quality.py                     # about 80 min on a 2-core CPU
    python benchmarks/quality.py --steps 4000 --seeds 3 --held-out 256 --accelerator gpu   # larger, GPU

Writes ``benchmarks/results/quality.json`` and ``docs/figures/ablation_grid.png``;
``python benchmarks/results_report.py`` renders them into docs/results.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.inpainting_study import (  # noqa: E402
    HELD_OUT_SEED, TRAIN_SEED, case_table, choose, held_out_cases, mean_and_spread, save_png, score_fills,
    synthetic_sets, train_module,
)
from callbacks.boundary_loss import BoundaryLoss  # noqa: E402
from callbacks.consistency_loss import UpsamplingConsistencyLoss  # noqa: E402
from callbacks.ema import EMA  # noqa: E402
from evaluation.grids import labelled_grid, masked_view  # noqa: E402
from inpainters.classical import HarmonicInpainter, MeanFillInpainter, TeleaInpainter  # noqa: E402
from lightning_modules.c2f_diffusion import C2FDiffusionModule  # noqa: E402
from optim.schedules import WarmupCosineLR  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "quality.json"
GRID = ROOT / "docs" / "figures" / "ablation_grid.png"
SIZE = 64
UNETS = [
    {"channels": 32, "channel_mults": [1, 2, 2], "num_res_blocks": 1, "attention_levels": [2], "heads": 2, "norm_groups": 8},
    {"channels": 24, "channel_mults": [1, 2, 2, 2], "num_res_blocks": 1, "attention_levels": [3], "heads": 2, "norm_groups": 8},
]
SAMPLING = [20, 10]  # DDIM steps of the two stages (32, 64 px)
GAIN_GRID = [1.0, 1.5, 2.0, 3.0]
TRAINED = {
    "full": {},
    "paste-only combiner": {"combiner": "paste"},
    "single stage": {"single_stage": True},
    "no LCG": {"lcg": False},
    "no boundary loss": {"boundary": False},
    "no consistency loss": {"consistency": False},
}


def single_stage_steps(two_stage: list[int]) -> int:
    """DDIM steps of the one 64 px stage that cost the same 64 px network evaluations as ``two_stage`` (a 32 px
    evaluation costs a quarter: 20 / 4 + 10 = 15)."""
    return max(1, round(two_stage[0] / 4 + two_stage[1]))


def build(variant: dict[str, Any], prediction: str, lr: float, steps: int,
          sampling: list[int] = SAMPLING) -> C2FDiffusionModule:
    """The C2F module of a variant (two stages, or one 64 px stage)."""
    single = variant.get("single_stage", False)
    return C2FDiffusionModule(
        unets=UNETS[1:] if single else UNETS, embedding={"tokens_per_category": 4, "dim": 32},
        resolutions=[SIZE] if single else [SIZE // 2, SIZE],
        sampling_steps=[single_stage_steps(sampling)] if single else list(sampling),
        guidance_gains=[1.0] if single else [1.0, 1.0], combiner_width=16, combiner_depth=2,
        combiner=variant.get("combiner", "learned"), lcg=variant.get("lcg", True), prediction=prediction,
        condition_blur_sigma=[0.0, 1.0], degenerate_masks="warn", seed=0,
        optimizer=lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.0),
        lr_scheduler=lambda opt: WarmupCosineLR(opt, warmup_steps=min(100, steps // 10), total_steps=steps, min_lr_ratio=0.1),
    )


def loss_callbacks(variant: dict[str, Any]) -> list:
    """The loss-term callbacks a variant trains with (both, unless it ablates one; none for one stage)."""
    out = []
    if variant.get("boundary", True):
        out.append(BoundaryLoss(weight=0.5, width=2))
    if variant.get("consistency", True) and not variant.get("single_stage"):
        out.append(UpsamplingConsistencyLoss(weight=0.5, sigma=1.0))
    return out


def training_flops(module: C2FDiffusionModule, batch: dict) -> float:
    """Mean FLOPs of one training step over the stages the module samples (forward + backward)."""
    per_stage = []
    for stage in module.train_stages:
        with FlopCounterMode(display=False) as counter:
            per_sample, _ = module.stage_losses(batch, stage, generator=torch.Generator().manual_seed(0))
            per_sample.mean().backward()
        module.zero_grad(set_to_none=True)
        per_stage.append(counter.get_total_flops())
    return sum(per_stage) / len(per_stage)


#: the overall figures a variant is reported with (keys of a case-table ``all`` row)
FIGURES = ("swd", "residue", "mae_mean_k", "mae_sample", "seam_error", "texture_ratio_set")


def sampler(module: C2FDiffusionModule, gains: list[float], seed: int):
    """``fill(image, mask, category)`` sampling the module with the given gains and a fixed seed."""
    gen = torch.Generator().manual_seed(seed)

    def fill(image, mask, category):
        return module.inpaint(image, mask, category, gains=gains, generator=gen)

    return fill


def fills(fill, cases, k: int, chunk: int = 16) -> torch.Tensor:
    """``(k, N, 3, H, W)``: ``k`` draws of ``fill(image, mask, category)`` over the cases, in chunks."""
    draws = []
    with torch.no_grad():
        for _ in range(k):
            parts = [fill(cases.image[i:i + chunk], cases.mask[i:i + chunk], cases.category[i:i + chunk]).float()
                     for i in range(0, len(cases), chunk)]
            draws.append(torch.cat(parts))
    return torch.stack(draws)


def evaluate(fill, cases, k: int) -> tuple[dict[str, float], list[dict], torch.Tensor]:
    """Overall figures (:data:`FIGURES`), the per-group table and the first draw of ``k`` fills of the cases."""
    samples = fills(fill, cases, k)
    rows, desc = score_fills(samples, cases)
    table = case_table(rows, desc)
    return {f: float(table[0][f]) for f in FIGURES}, table, samples[0]


def tune_gains(module: C2FDiffusionModule, val, single: bool, grid: list[float] = GAIN_GRID, k: int = 2) -> list[float]:
    """Per-stage guidance gains over ``grid`` chosen on the validation cases by the selection rule
    (``benchmarks.inpainting_study.choose``: SWD + removal residue, then the MAE of the mean of ``k`` samples);
    coarse stage first, the fine stage tries the two smallest gains, never above the coarse one."""
    if single:
        candidates = [[g] for g in grid]
    else:
        candidates = [[g0, g1] for g0 in grid for g1 in grid[:2] if g1 <= g0]
    return choose([(g, evaluate(sampler(module, g, 1), val, k)[1][0]) for g in candidates])


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as the report links it), else absolute."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps of the two-stage variants")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per variant")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--prediction", default="v", help="prediction target of every variant (docs/results.md)")
    parser.add_argument("--train-images", type=int, default=2000, help="training scenes")
    parser.add_argument("--held-out", type=int, default=64, help="held-out scenes scored per variant")
    parser.add_argument("--val-images", type=int, default=20, help="validation scenes used to tune the gains")
    parser.add_argument("--k", type=int, default=4, help="samples per case (MAE of the mean of K; tuning uses 2)")
    parser.add_argument("--only", nargs="*", default=None, help="trained variants to run (default all)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "studies"), help="where the synthetic sets go")
    parser.add_argument("--sampling-steps", type=int, nargs=2, default=SAMPLING,
                        help="DDIM steps of the two stages (the single-stage variant gets the same 64 px evaluations)")
    parser.add_argument("--gain-grid", type=float, nargs="+", default=GAIN_GRID, help="guidance gains tried per stage")
    parser.add_argument("--out", default=str(RESULTS), help="JSON result file (the grid goes beside it unless default)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    grid = GRID if out == RESULTS else out.with_suffix(".png")
    torch.set_num_threads(args.threads)
    start_all = time.perf_counter()
    train_glob, val_glob, test_glob = synthetic_sets(Path(args.data_dir), SIZE, args.train_images, args.held_out)
    data = held_out_cases(args.held_out, SIZE, HELD_OUT_SEED, "test")
    val = held_out_cases(args.val_images, SIZE, TRAIN_SEED, "val")  # validation scenes of the training set's seed
    flop_batch = {"image": data.image[:4], "mask": data.mask[:4], "category": data.category[:4]}
    per_seed: dict[str, list[dict[str, float]]] = {}
    shown: dict[str, torch.Tensor] = {}
    tables: dict[str, list] = {}
    notes: dict[str, Any] = {}
    for name, fill in (("mean fill", MeanFillInpainter()), ("harmonic", HarmonicInpainter()), ("Telea", TeleaInpainter())):
        figures, tables[name], shown[name] = evaluate(lambda i, m, c, f=fill: f(i, m), data, 1)  # deterministic: K = 1
        per_seed[name] = [figures]
    two_stage_flops = training_flops(build({}, args.prediction, args.lr, args.steps), flop_batch)
    single_flops = training_flops(build({"single_stage": True}, args.prediction, args.lr, args.steps), flop_batch)
    single_steps = max(1, round(args.steps * two_stage_flops / single_flops))
    notes["training_flops_per_step"] = {"two_stage_mean": two_stage_flops, "single_stage": single_flops}
    notes["single_stage_steps"] = single_steps
    for name, variant in TRAINED.items():
        if args.only and name not in args.only:
            continue
        single = variant.get("single_stage", False)
        steps = single_steps if single else args.steps
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            module = build(variant, args.prediction, args.lr, steps, args.sampling_steps)
            seconds = train_module(module, train_glob, val_glob, SIZE, steps, args.batch_size, seed,
                                   callbacks=[*loss_callbacks(variant), EMA(decay=0.995, warmup=True)])
            module.eval()
            gains = (tune_gains(module, val, single, args.gain_grid, k=min(2, args.k)) if variant.get("lcg", True)
                     else [1.0] * module.num_stages)
            figures, table, filled = evaluate(sampler(module, gains, 100 + seed), data, args.k)
            per_seed.setdefault(name, []).append({**figures, "train_seconds": seconds, "steps": steps})
            notes.setdefault("gains", {}).setdefault(name, []).append(gains)
            if seed == 0:
                shown[name], tables[name] = filled, table
            if name == "full":
                figures1, table1, filled1 = evaluate(sampler(module, [1.0] * module.num_stages, 100 + seed), data, args.k)
                per_seed.setdefault("gain 1", []).append(figures1)
                if seed == 0:
                    shown["gain 1"], tables["gain 1"] = filled1, table1
            print(f"{name} seed {seed}: " + "  ".join(f"{k} {v:.4f}" for k, v in per_seed[name][-1].items()), flush=True)
    table = {}
    for name, runs in per_seed.items():
        table[name] = {k: mean_and_spread([r[k] for r in runs]) for k in FIGURES}
        table[name]["runs"] = len(runs)
    show = list(range(min(6, args.held_out)))
    order = [n for n in ("full", "gain 1", "paste-only combiner", "single stage", "no LCG", "no boundary loss",
                         "no consistency loss", "mean fill", "harmonic", "Telea") if n in shown]
    rows = [("masked input", [masked_view(data.image[i], data.mask[i]) for i in show]),
            ("target", [data.target[i] for i in show]), *((n, [shown[n][i] for i in show]) for n in order)]
    save_png(labelled_grid(rows, [data.keys[i].rsplit("_", 1)[-1] for i in show], scale=1), grid)
    result = {
        "benchmark": "quality", "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("data_dir", "out")}, "unets": UNETS,
        "sampling_steps": {"two_stage": args.sampling_steps, "single_stage": [single_stage_steps(args.sampling_steps)]},
        "table": table, "per_seed": per_seed, "notes": notes, "grid": _shown(grid),
        "case_tables": tables, "selection_rule": "benchmarks.inpainting_study.SELECTION_RULE",
        "wall_seconds": round(time.perf_counter() - start_all), "torch": torch.__version__, "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{'variant':22} " + " ".join(f"{k:>16}" for k in FIGURES))
    for name in order:
        t = table[name]
        print(f"{name:22} " + " ".join(f"{t[k][0]:>8.4f}±{t[k][1]:<7.4f}" for k in FIGURES))
    print(f"wrote {_shown(out)} and {_shown(grid)} in {result['wall_seconds']} s")
    return result


if __name__ == "__main__":
    main()
