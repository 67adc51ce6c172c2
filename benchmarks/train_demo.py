"""Train, export and evaluate the bundled demo model (``assets/c2f_synthetic_demo.ckpt``).

The recipe of ``configs/c2f/synthetic_demo.yaml``, one real ``python -m main fit`` per step:

1. LCG pretraining (``configs/lcg/synthetic_demo.yaml``): category embedding + the 32 px U-Net;
2. C2F stage 0 (32 px) initialised from it (``lcg_checkpoint`` + ``lcg_load_unet``);
3. C2F stage 1 (64 px) initialised from step 2 (``init_checkpoint``);
4. C2F stage 2 (128 px) initialised from step 3;
5. export of the final model as a standalone file (:meth:`diffusion.c2f.C2FModel.save`, loads with
   ``weights_only=True``);
6. the sampler defaults stored in it (guidance gains, DDIM steps) chosen on the validation scenes;
7. evaluation on held-out scenes generated with a dataset seed never used in training: hole MAE /
   PSNR / SSIM / seam error of the model and of the weight-free baselines (mean fill, harmonic,
   OpenCV Telea), and a labelled grid (``docs/figures/demo_grid.png``).

    python benchmarks/train_demo.py                  # all steps, about an hour on a 2-core CPU
    python benchmarks/train_demo.py --accelerator gpu --steps-scale 4   # longer, on a GPU
    python benchmarks/train_demo.py --only eval      # re-evaluate the bundled file

Resumable: run the same command again after a stop; finished steps are kept (``<work-dir>/<step>.done``) and a
step stopped part-way resumes from its ``last.ckpt``.

Writes ``benchmarks/results/demo_model.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.inpainting_study import (  # noqa: E402
    SELECTION_RULE, TRAIN_SEED, case_table, choose, eval_batch, held_out_cases, save_png, score, score_fills, summarise,
    synthetic_sets,
)
from diffusion.c2f import C2FModel  # noqa: E402
from diffusion.c2f_sampling import sample_c2f  # noqa: E402
from evaluation.grids import labelled_grid, masked_view  # noqa: E402
from inpainters.classical import HarmonicInpainter, MeanFillInpainter, TeleaInpainter  # noqa: E402

ASSET = ROOT / "assets" / "c2f_synthetic_demo.ckpt"
EXAMPLES = ROOT / "assets" / "examples"
EXAMPLE_SEED = 11  # dataset seed of the example scenes: never used for training (0) or the held-out study set (7)
RESULTS = ROOT / "benchmarks" / "results" / "demo_model.json"
GRID = ROOT / "docs" / "figures" / "demo_grid.png"
LCG_CONFIG, C2F_CONFIG = "configs/lcg/synthetic_demo.yaml", "configs/c2f/synthetic_demo.yaml"

#: (name, config, max_steps, batch_size, extra arguments) of each training step
STEPS = [
    ("lcg", LCG_CONFIG, 3000, 16, []),
    ("stage0", C2F_CONFIG, 400, 16, ["--model.init_args.train_stages=[0]", "--model.init_args.lcg_load_unet=true"]),
    ("stage1", C2F_CONFIG, 1500, 16, ["--model.init_args.train_stages=[1]"]),
    ("stage2", C2F_CONFIG, 1500, 8, ["--model.init_args.train_stages=[2]"]),
]


def fit(name: str, config: str, steps: int, batch: int, extra: list[str], work: Path, previous: Path | None,
        accelerator: str) -> Path:
    """One ``python -m main fit``; returns its ``last.ckpt``."""
    run_dir = work / name
    args = [
        sys.executable, "-m", "main", "fit", "--config", config, f"--trainer.max_steps={steps}",
        f"--trainer.accelerator={accelerator}", f"--data.init_args.batch_size={batch}",
        f"--data.init_args.samples_per_epoch={steps * batch}", f"--trainer.val_check_interval={max(1, steps // 3)}",
        f"--trainer.logger.init_args.save_dir={work}", f"--trainer.logger.init_args.name={name}",
        "--trainer.logger.init_args.version=run", f"--model.init_args.lr_scheduler.init_args.total_steps={steps}",
        f"--model.init_args.lr_scheduler.init_args.warmup_steps={min(100, steps // 10)}",
        *extra,
    ]
    if name == "stage0":
        args.append(f"--model.init_args.lcg_checkpoint={previous}")
    elif previous is not None:
        args.append(f"--model.init_args.init_checkpoint={previous}")
    last = work / name / "run" / "checkpoints" / "last.ckpt"
    done = work / f"{name}.done"
    if done.is_file() and last.is_file():  # finished before this (restarted) command: keep it
        print(f"[{name}] finished before ({done}); using {last}", flush=True)
        return last
    if last.is_file():  # stopped part-way (kill, SIGTERM, preemption): resume exactly where it stopped
        args.append("--ckpt_path=last")
    print(f"[{name}] {' '.join(args[2:])}", flush=True)
    start = time.perf_counter()
    subprocess.run(args, cwd=ROOT, check=True, env={**os.environ, "WANDB_MODE": "disabled"})
    print(f"[{name}] done in {time.perf_counter() - start:.0f} s", flush=True)
    if not last.is_file():
        raise FileNotFoundError(f"{name}: the run wrote no {last}")
    done.write_text(f"{time.perf_counter() - start:.0f} s\n")
    return last


SAMPLING_GRID = [([1.0, 1.0, 1.0], [30, 20, 15]), ([1.5, 1.2, 1.0], [30, 20, 15]), ([2.0, 1.5, 1.0], [30, 20, 15]),
                 ([1.0, 1.0, 1.0], [50, 30, 20]), ([0.5, 0.5, 1.0], [30, 20, 15])]


def tune_sampling(model_file: Path, val_images: int = 20, k: int = 2) -> dict:
    """Pick the guidance gains and DDIM steps on the VALIDATION scenes (not the held-out ones) by the selection rule
    of docs/results.md (``benchmarks.inpainting_study.choose``: SWD of the fills + removal residue, then the MAE of
    the mean of ``k`` samples; never one sample's MAE) and store them as the model file's sampler defaults."""
    val = held_out_cases(val_images, 128, TRAIN_SEED, "val")  # validation scenes of the training set (dataset seed 0)
    model = C2FModel.from_checkpoint(model_file)
    scores = []
    for gains, steps in SAMPLING_GRID:
        draws = []
        for j in range(k):
            gen = torch.Generator().manual_seed(j)
            with torch.no_grad():
                draws.append(sample_c2f(model, val.image, val.mask, val.category, steps, gains, generator=gen)[0])
        rows, desc = score_fills(torch.stack(draws), val)
        overall = case_table(rows, desc)[0]
        scores.append({"gains": gains, "steps": steps, **{m: overall[m] for m in ("swd", "residue", "mae_mean_k", "mae_sample")}})
        print(f"  gains {gains} steps {steps}: SWD {overall['swd']:.1f} residue {overall['residue']:.3f} "
              f"MAE mean of {k} {overall['mae_mean_k']:.4f}", flush=True)
    best = choose([((r["gains"], r["steps"]), r) for r in scores])
    C2FModel.from_checkpoint(model_file, sampling={"steps": best[1], "gains": best[0]}).save(model_file)
    return {"grid": scores, "chosen": {"gains": best[0], "steps": best[1]}, "rule": SELECTION_RULE}


def evaluate(model_file: Path, held_out: int, seed: int = 0) -> dict:
    """Score the exported model and the baselines on held-out scenes; write the labelled grid."""
    _, _, test_glob = synthetic_sets(ROOT / "data" / "studies", 128, 16, held_out)
    data = eval_batch(test_glob, 128, held_out)
    model = C2FModel.from_checkpoint(model_file)
    gen = torch.Generator().manual_seed(seed)

    def c2f(image, mask, category):
        return sample_c2f(model, image, mask, category, generator=gen)[0]

    rows, fills = {}, {}
    for name, fill in (("C2F demo model", c2f), ("mean fill", lambda i, m, c: MeanFillInpainter()(i, m)),
                       ("harmonic", lambda i, m, c: HarmonicInpainter()(i, m)), ("Telea", lambda i, m, c: TeleaInpainter()(i, m))):
        per_image, filled = score(fill, data)
        rows[name], fills[name] = summarise(per_image), filled
        print(f"  {name:16} " + "  ".join(f"{k} {v:.4f}" for k, v in rows[name].items()), flush=True)
    saturated = float(((fills["C2F demo model"].abs() > 0.98) & (data.mask > 0.5)).float().mean() / (data.mask > 0.5).float().mean())
    show = list(range(min(8, held_out)))
    grid = labelled_grid(
        [(data.keys[i][-4:], [masked_view(data.image[i], data.mask[i]), *(fills[n][i] for n in fills), data.image[i]]) for i in show],
        ["masked input", *fills, "original"], scale=1,
    )
    save_png(grid, GRID)
    return {"held_out_images": held_out, "metrics": rows, "saturated_hole_fraction": saturated,
            "grid": str(GRID.relative_to(ROOT)), "model_file": str(model_file.relative_to(ROOT)),
            "model_megabytes": round(model_file.stat().st_size / 2**20, 2)}


#: the bundled example scenes: object removal (an object's mask, dilated as at evaluation, filled with background;
#: its clean plate is bundled) and one of each background mask type
EXAMPLE_KINDS = ["remove_object", "bg_object", "remove_object", "bg_random", "remove_object", "bg_replacement",
                 "remove_object", "remove_object"]


def write_examples(size: int = 128) -> list[str]:
    """Example scenes (dataset seed :data:`EXAMPLE_SEED`, never used for training or the studies), as PNG files.

    ``assets/examples/images/<name>.png`` and ``assets/examples/masks/<name>.png`` (white = hole), what
    ``configs/c2f/demo.yaml`` inpaints with the background category by default; for the object-removal scenes also
    ``assets/examples/clean_plates/<name>.png``, the scene before the object was drawn (what removal should give).
    """
    import numpy as np
    from PIL import Image

    from datamodules.synthetic import SYNTHETIC_CLASSES, synthetic_scene_layers
    from evaluation.targets import OBJECT_DILATION
    from masks.morphology import dilate_hole
    from masks.sampler import MaskSampler
    from masks.types import MaskType

    things = [c["id"] for c in SYNTHETIC_CLASSES if c["kind"] == "thing"]
    stuff = [c["id"] for c in SYNTHETIC_CLASSES if c["kind"] == "stuff"]
    for folder in ("images", "masks", "clean_plates"):
        (EXAMPLES / folder).mkdir(parents=True, exist_ok=True)
        for old in (EXAMPLES / folder).glob("*.png"):
            old.unlink()
    names = []
    for i, kind in enumerate(EXAMPLE_KINDS):
        wanted = MaskType.FG_OBJECT if kind == "remove_object" else MaskType[kind.upper()]
        sampler = MaskSampler(probabilities=[1.0 if t == wanted else 0.0 for t in MaskType], thing_ids=things,
                              stuff_ids=stuff, random_hole_range=(0.1, 0.3))
        for attempt in range(100):  # the first scene (from i) that holds a region of the wanted kind
            seed = EXAMPLE_SEED * 100_000_000 + i + 1000 * attempt
            image, seg, clean, _ = synthetic_scene_layers(seed, size)
            mask, mask_type = sampler(size, size, np.random.default_rng([EXAMPLE_SEED, i, attempt]), seg)
            if mask_type == wanted:
                break
        if kind == "remove_object":  # dilated as object masks are at evaluation (evaluation.targets)
            grow = max(1, round(OBJECT_DILATION * size))
            mask = dilate_hole(torch.from_numpy(mask)[None, None], grow)[0, 0].numpy()
            Image.fromarray(clean).save(EXAMPLES / "clean_plates" / f"scene{i}_{kind}.png")
        name = f"scene{i}_{kind}"
        Image.fromarray(image).save(EXAMPLES / "images" / f"{name}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(EXAMPLES / "masks" / f"{name}.png")
        names.append(name)
    return names


REMOVAL_REFERENCE = EXAMPLES / "removal_reference.json"


def load_examples(names: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[str]]:
    """The bundled examples as ``(image, mask, clean_plate, names)`` tensors in [-1, 1] (mask 1 = hole); clean plates
    only when every named example has one (object removal), else None."""
    import numpy as np

    from safe_io.image_decoding import decode_image, decode_mask

    names = names or sorted(p.stem for p in (EXAMPLES / "images").glob("*.png"))

    def to_tensor(folder: str) -> torch.Tensor:
        arrays = [decode_image(EXAMPLES / folder / f"{n}.png") for n in names]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1

    image = to_tensor("images")
    holes = [decode_mask(EXAMPLES / "masks" / f"{n}.png") >= 128 for n in names]
    mask = torch.from_numpy(np.stack(holes).astype(np.float32))[:, None]
    plates = [EXAMPLES / "clean_plates" / f"{n}.png" for n in names]
    clean = to_tensor("clean_plates") if all(p.is_file() for p in plates) else None
    return image, mask, clean, names


def example_removal(model_file: Path, seeds: tuple[int, ...] = (0, 1)) -> dict[str, float]:
    """Removal residue (``evaluation.removal_metrics``, fraction of hole pixels off the clean plate) of the object-removal
    examples, filled as ``configs/c2f/demo.yaml`` fills them (background category, colour matching), mean over ``seeds``."""
    from evaluation.removal_metrics import residue_fraction
    from inpainters.c2f import C2FInpainter

    names = [p.stem for p in sorted((EXAMPLES / "clean_plates").glob("*.png"))]
    image, mask, clean, names = load_examples(names)
    inpainter = C2FInpainter(str(model_file), category="background", color_match=True)  # loaded once
    residue = torch.zeros(len(names))
    for seed in seeds:
        inpainter.seed = seed  # each call seeds its sampling noise from this
        with torch.inference_mode():
            filled = inpainter(image, mask)
        residue += residue_fraction(filled, clean, mask) / len(seeds)
    return {name: round(float(r), 4) for name, r in zip(names, residue)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default="runs/demo_training", help="where the four training runs go")
    parser.add_argument("--only", choices=["train", "tune", "eval", "examples"], default=None,
                        help="run only the training, the sampler tuning, the evaluation, or write the example scenes")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step budget (e.g. 4 on a GPU)")
    parser.add_argument("--accelerator", default="cpu", help="trainer accelerator")
    parser.add_argument("--held-out", type=int, default=64, help="held-out scenes in the evaluation")
    parser.add_argument("--reference-model", default=None,
                        help="record this model's removal residue on the bundled examples (assets/examples/removal_reference.json)")
    args = parser.parse_args(argv)
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.only in (None, "train"):
        work = ROOT / args.work_dir
        previous, timings = None, {}
        for name, config, steps, batch, extra in STEPS:
            start = time.perf_counter()
            previous = fit(name, config, max(1, round(steps * args.steps_scale)), batch, extra, work, previous, args.accelerator)
            timings[name] = round(time.perf_counter() - start)
        model = C2FModel.from_checkpoint(previous)
        model.save(ASSET)
        result["training"] = {"steps": {n: round(s * args.steps_scale) for n, _, s, _, _ in STEPS}, "seconds": timings,
                              "accelerator": args.accelerator, "date": time.strftime("%Y-%m-%d"),
                              "parameters": sum(p.numel() for p in model.parameters())}
        print(f"exported {ASSET.relative_to(ROOT)} ({ASSET.stat().st_size / 2**20:.1f} MB)")
    if args.only in (None, "tune"):
        result["sampling"] = tune_sampling(ASSET)
    if args.only in (None, "train", "tune"):  # the same model as .safetensors (Python API; tests/test_safetensors.py)
        print(f"exported {C2FModel.from_checkpoint(ASSET).save(ASSET.with_suffix('.safetensors')).relative_to(ROOT)}")
    if args.only in (None, "examples"):
        result["examples"] = write_examples()
    if args.reference_model:  # the removal residue of a model on the bundled examples, e.g. the previous demo model
        reference = {"model": args.reference_model, "seeds": [0, 1], "residue": example_removal(Path(args.reference_model))}
        REMOVAL_REFERENCE.write_text(json.dumps(reference, indent=2) + "\n")
        print(f"wrote {REMOVAL_REFERENCE.relative_to(ROOT)}: {reference['residue']}")
    if args.only in (None, "eval"):
        result["evaluation"] = evaluate(ASSET, args.held_out)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
