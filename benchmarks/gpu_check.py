"""One prepared GPU validation run: full-size training, three-stage inpainting, attention, generators and DDP.

Every item runs in its own ``try``: a failure is recorded (exception type, message, the tail of
the traceback) and the next item starts. Items are run in the order below (most important first);
``--budget-s`` stops *starting* items once that many seconds have passed (the rest are recorded as
skipped, with the reason), and the JSON is rewritten after every item, so a run cut short still
leaves every finished figure. ``--only`` runs a subset (ids or prefixes, e.g. ``train/c2f_s2``,
``attention``, ``train/*/fp32/*``); ``--merge`` keeps the other items of an earlier JSON of the
same GPU.

Items (ids as in the JSON):

1. ``train/<config>/<precision>/<mode>``: a real ``python -m main fit`` of the full-size config
   (``configs/lcg/places2_256.yaml``; ``configs/c2f/places2.yaml`` with ``train_stages=[0]``,
   ``[1]``, ``[2]`` and ``lcg_checkpoint`` nulled; ``configs/hfgi/ffhq_1024.yaml`` with its
   e4e / StyleGAN2 checkpoints and directions nulled, a random LPIPS backbone and a random-init
   ArcFace file in the official layout so the identity loss runs) on synthetic shards generated at
   the config's data resolution (the datamodule's ``synthetic_dir``), with the config's batch size.
   :class:`benchmarks.step_probe.StepProbe`, added with ``--trainer.callbacks+=``, times the steps
   after ``--warmup`` (batch start to batch end: data loading excluded) and counts the FLOPs of
   step 0 (forward + backward + optimizer step, with ``FlopCounterMode``; gradient-checkpointing
   recomputation included). Reported: images/s (batch / median step time), peak CUDA memory over
   the timed steps, TFLOP/s and MFU = FLOPs per step / median step time / the GPU's dense bf16
   peak (also for fp32 cells, which run TF32 matmuls).
   Cells: every config in its own precision, eager (``lcg``, ``c2f_s0..2`` bf16-mixed; ``hfgi``
   fp32), then, after items 2-5, ``lcg`` fp32 eager, ``hfgi`` bf16 eager, ``lcg`` bf16
   ``torch.compile`` and ``c2f_s2`` bf16 ``torch.compile`` (compile: after one eager step the called
   submodules are compiled, :class:`benchmarks.train_throughput.CompileCalledModules`; compilation
   falls in the warm-up steps).
2. ``inpaint/c2f_1024``: :func:`diffusion.c2f_sampling.sample_c2f` on the
   :class:`diffusion.c2f.C2FModel` of ``configs/c2f/places2.yaml`` (random weights, bf16 autocast)
   at 256 / 512 / 1024 with 60 / 40 / 30 DDIM steps: seconds per image at batch 1 and at the
   largest batch that fits (doubling from 2 up to ``--max-batch``; each size is tried with one
   step per stage, peak memory not depending on the step count; stops at the first OOM), batched
   CFG (one doubled forward) vs two forwards per step. FLOPs of one inpainting: counted with
   ``FlopCounterMode`` for a run of 2 steps per stage, plus ``(T_s - 2)`` times the counted FLOPs of
   one DDIM step of stage ``s`` (every step of a stage is the same computation; the dry run also
   counts its full run directly and records both). MFU = FLOPs x batch / seconds / peak. Peak
   memory here and in items 3-4: ``max_memory_allocated`` during the call minus what was held before
   it (the weights).
3. ``attention``: one :class:`networks.c2f.linear_attention.GatedLinearAttention` layer (256
   channels, 4 heads, batch 1, bf16 autocast) at 64^2, 128^2 and 256^2 tokens: linear vs
   ``scaled_dot_product_attention`` vs the explicit softmax matrix (``benchmarks/attention.py``),
   forward and forward + backward; ``OOM`` where it does not fit.
4. ``generators/stylegan2_hfgi``: the StyleGAN2 config-f 1024 generator of a random-init
   :class:`networks.hfgi.pipeline.HFGIPipeline` (official architecture), forward without and with
   HFGI's fusion (E_c's scale / shift of the image's distortion map at the 64x64 block), and a whole
   reconstruction (e4e + G + ADA + E_c + fused G), fp32, batch 1. ``generators/big_lama``:
   ``FFCResNetGenerator(**BIG_LAMA_CONFIG)`` at 512 and 1024, fp32, batch 1.
5. ``ddp``: ``python -m main fit --config configs/c2f/tiny.yaml --model.init_args.train_stages=[2]
   --trainer.strategy=ddp --trainer.devices=1`` on the GPU for 3 steps; checks the process group's
   backend is NCCL (one stage: with all stages, one sampled per step, DDP stops on unused parameters).

Without ``--dry-run`` the script needs CUDA. Training cells always run as ``python -m main fit``
subprocesses; items 2-4 run in a subprocess of this script too (``--isolate``, default on a GPU),
so a crash or hang is contained: a subprocess is killed after its item's cap (120-300 s) or the
remaining budget plus 60 s, whichever comes first.

``--dry-run``: the same items and code paths on CPU with the tiny configs (``configs/lcg/tiny.yaml``,
``configs/c2f/tiny.yaml``, ``configs/hfgi/tiny.yaml``), batch 1-2, 1 warm-up + 1 timed step, small
sizes, one CPU thread, FLOP counting included, no ``torch.compile`` cells (inductor takes minutes on
a CPU), items 2-4 in-process; about 30 s on 2 cores. It writes its JSON to ``--out`` (default: a
temporary file; never ``benchmarks/results/gpu_check.json``). ``tests/test_gpu_check.py`` runs it.

When a GPU is available, run this one command from the repository root::

    timeout 480 python benchmarks/gpu_check.py --budget-s 390

Expected duration on one H200: at most about 7.5 minutes (no item starts after 390 s, and a running
subprocess is killed at most 60 s later; ``timeout 480`` is the hard stop), less if the items are
quicker; no full-size run has been timed yet. It prints a summary and writes
``benchmarks/results/gpu_check.json`` after every item; rerun failed items with
``--only <id> --merge``. Then ``python benchmarks/run_all.py --report-only`` regenerates the GPU
section of BENCHMARKS.md from that JSON; commit both
(``git add benchmarks/results/gpu_check.json BENCHMARKS.md``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import gc
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "gpu_check.json"

#: dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from NVIDIA's data sheets; first match of
#: the regular expression in ``torch.cuda.get_device_name()`` wins
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    (r"\bH200 NVL\b", 835.5),
    (r"\bGH200\b", 989.5),
    (r"\bH200\b", 989.5),
    (r"\bH100 NVL\b", 835.5),
    (r"\bH100 PCIe\b", 756.5),
    (r"\bH100\b", 989.5),
    (r"\bA100\b", 312.0),
    (r"\bL40S\b", 362.05),
    (r"\bL40\b", 181.05),
    (r"\bL4\b", 121.0),
]

C2F_SAMPLING_STEPS = [60, 40, 30]
DRY_SAMPLING_STEPS = [3, 2, 2]
DDP_STEPS = 3


# --------------------------------------------------------------------------- run context
@dataclass
class Context:
    """Settings of one run shared by every item."""

    dry_run: bool
    device: str
    work: Path
    start: float
    budget_s: float
    peak_tflops: float | None
    isolate: bool
    warmup: int
    steps: int
    max_batch: int
    inpaint_size: int | None
    attention_sides: list[int]
    repeats: int
    argv: list[str] = field(default_factory=list)
    cap_s: float = float("inf")  # time limit of the item being run (set by run_item)

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.start

    def remaining(self) -> float:
        """Seconds left of the budget (negative once it is used up)."""
        return self.budget_s - self.elapsed()

    def child_timeout(self) -> float:
        """Time limit of a subprocess started now: the remaining budget plus 60 s of grace, at most the item's cap."""
        return min(self.cap_s, max(self.remaining(), 0.0) + 60.0)

    def autocast(self):
        """bf16 autocast on CUDA (how the models run there); nothing on the CPU dry run."""
        if self.device == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    def sync(self) -> None:
        """Wait for queued CUDA work."""
        if self.device == "cuda":
            torch.cuda.synchronize()

    def mfu(self, flops: float | None, seconds: float | None) -> float | None:
        """``flops / seconds / peak`` (None without a peak or a FLOP count)."""
        if not flops or not seconds or not self.peak_tflops:
            return None
        return flops / seconds / (self.peak_tflops * 1e12)


def peak_bf16_tflops(gpu_name: str | None) -> float | None:
    """Dense bf16 peak TFLOP/s of a GPU by its name (:data:`PEAK_BF16_TFLOPS`); None when unknown."""
    if not gpu_name:
        return None
    for pattern, value in PEAK_BF16_TFLOPS:
        if re.search(pattern, gpu_name):
            return value
    return None


class ChildFailed(RuntimeError):
    """A subprocess of the check failed; carries the exception type, message and traceback it printed."""

    def __init__(self, what: str, returncode: int | None, output: str) -> None:
        self.returncode = returncode
        tb_start = output.rfind("Traceback (most recent call last):")
        self.child_traceback = output[tb_start:] if tb_start >= 0 else output[-3000:]
        lines = [ln for ln in output.strip().splitlines() if ln.strip()]
        self.child_type, self.child_message = "ChildProcessError", f"{what} exited with status {returncode}"
        for line in reversed(lines):
            match = re.match(r"^(?:\[rank\d+\]: )?([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure)): (.*)$", line)
            if match:
                self.child_type, self.child_message = match.group(1), match.group(2)
                break
        super().__init__(f"{what} failed (exit {returncode}): {self.child_type}: {self.child_message}")


def describe_error(err: BaseException) -> dict[str, str]:
    """``{"type", "message", "traceback"}`` of an exception (a child's own error when it is a :class:`ChildFailed`)."""
    if isinstance(err, ChildFailed):
        return {"type": err.child_type, "message": err.child_message[:2000],
                "traceback": "\n".join(err.child_traceback.strip().splitlines()[-25:])}
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return {"type": type(err).__name__, "message": str(err)[:2000], "traceback": "\n".join(tb.strip().splitlines()[-25:])}


def child_env() -> dict[str, str]:
    """Environment of a subprocess: the repository importable, W&B off, no Slurm task identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.pop("WANDB_SERVICE", None)
    env.update(PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""), WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    return env


def run_child(cmd: list[str], what: str, log: Path, timeout: float) -> float:
    """Run ``cmd`` from the repository root with its output in ``log``; its own process group is
    killed after ``timeout`` s. Returns the wall time; raises :class:`ChildFailed` on a non-zero exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
            raise TimeoutError(f"{what} did not finish within {timeout:.0f} s and was killed; its output ended with:\n{tail}") from None
    wall = time.perf_counter() - t0
    if rc != 0:
        raise ChildFailed(what, rc, log.read_text(errors="replace"))
    return wall


def cleanup() -> None:
    """Free what a finished (or failed) item left behind."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- 1. training cells
@dataclass(frozen=True)
class TrainCell:
    """One training measurement: a config run through ``python -m main fit`` in one precision / mode."""

    name: str
    config: str
    tiny_config: str
    precision: str
    mode: str = "eager"
    overrides: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Item id, ``train/<name>/<bf16|fp32>/<eager|compile>``."""
        return f"train/{self.name}/{'bf16' if self.precision.startswith('bf16') else 'fp32'}/{self.mode}"


def _c2f_overrides(stage: int) -> tuple[str, ...]:
    return (f"--model.init_args.train_stages=[{stage}]", "--model.init_args.lcg_checkpoint=null",
            "--model.init_args.lcg_load_unet=false")


HFGI_OVERRIDES = (
    "--model.init_args.e4e_checkpoint=null", "--model.init_args.stylegan2_checkpoint=null",
    "--model.init_args.hfgi_checkpoint=null", "--model.init_args.directions=null",
    "--model.init_args.direction_degrees=null", "--model.init_args.lpips_pretrained_backbone=false",
)


def _cell(name: str, precision: str, mode: str = "eager") -> TrainCell:
    if name == "lcg":
        return TrainCell(name, "configs/lcg/places2_256.yaml", "configs/lcg/tiny.yaml", precision, mode)
    if name.startswith("c2f_s"):
        return TrainCell(name, "configs/c2f/places2.yaml", "configs/c2f/tiny.yaml", precision, mode, _c2f_overrides(int(name[-1])))
    if name == "hfgi":
        return TrainCell(name, "configs/hfgi/ffhq_1024.yaml", "configs/hfgi/tiny.yaml", precision, mode, HFGI_OVERRIDES)
    raise ValueError(f"unknown training config {name!r}")


#: every config in its own precision, eager (run first)
BASE_CELLS = [_cell("lcg", "bf16-mixed"), _cell("c2f_s0", "bf16-mixed"), _cell("c2f_s1", "bf16-mixed"),
              _cell("c2f_s2", "bf16-mixed"), _cell("hfgi", "32-true")]
#: the precision / compile comparisons (run after items 2-5; GPU only for compile)
EXTRA_CELLS = [_cell("lcg", "32-true"), _cell("hfgi", "bf16-mixed"), _cell("lcg", "bf16-mixed", "compile"),
               _cell("c2f_s2", "bf16-mixed", "compile")]


def _config_data(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())["data"]["init_args"]


def _synthetic_args(ctx: Context, resolution: int, batch: int) -> list[str]:
    """Datamodule arguments that train on a synthetic set generated at ``resolution`` in the work dir."""
    count = 4 if ctx.dry_run else (8 if resolution >= 1024 else 64)
    count = max(count, 2 * batch)
    return [
        f"--data.init_args.synthetic_dir={ctx.work / 'data' / f'synthetic_{resolution}_{count}'}",
        f"--data.init_args.synthetic_samples=[{count},0,0]",
        "--data.init_args.train_shards=null", "--data.init_args.val_shards=null", "--data.init_args.test_shards=null",
    ]


def _probe_arg(out: Path, warmup: int, flop_step: int | None) -> str:
    spec = {"class_path": "benchmarks.step_probe.StepProbe", "init_args": {"out": str(out), "warmup": warmup, "flop_step": flop_step}}
    return "--trainer.callbacks+=" + json.dumps(spec)


def _run_fit(ctx: Context, args: list[str], what: str, log_name: str, subprocess_: bool) -> float:
    """``python -m main fit <args>`` as a subprocess, or ``main.cli_main`` in this process; returns wall seconds."""
    if subprocess_:
        return run_child([sys.executable, "-m", "main", "fit", *args], what, ctx.work / "logs" / f"{log_name}.log", ctx.child_timeout())
    from main import cli_main

    t0 = time.perf_counter()
    cli_main(["fit", *args])
    return time.perf_counter() - t0


def _common_fit_args(ctx: Context, run_name: str) -> list[str]:
    return [
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={ctx.work / 'runs'}", f"--trainer.logger.init_args.name={run_name}",
        "--checkpoint.save_top_k=0", "--checkpoint.save_last=false",
    ]


def train_args(ctx: Context, cell: TrainCell, probe: Path) -> list[str]:
    """The arguments after ``python -m main fit`` that measure ``cell`` (full config, or tiny for a dry run)."""
    config = ROOT / (cell.tiny_config if ctx.dry_run else cell.config)
    data = _config_data(config)
    batch = (1 if cell.name == "hfgi" else 2) if ctx.dry_run else int(data["batch_size"])
    args = ["--config", str(config), *cell.overrides, f"--trainer.precision={cell.precision}",
            f"--trainer.max_steps={ctx.warmup + ctx.steps}", f"--data.init_args.batch_size={batch}",
            *_common_fit_args(ctx, cell.id.replace("/", "_")), *_synthetic_args(ctx, int(data["resolution"]), batch)]
    if not ctx.dry_run:
        args.append("--trainer.accelerator=gpu")
    if cell.name == "hfgi":  # the official identity loss, with random ArcFace weights (written by run_train_cell)
        args.append(f"--model.init_args.arcface_checkpoint={arcface_path(ctx)}")
    if cell.mode == "compile":
        if ctx.warmup < 2:
            raise ValueError("compile cells need --warmup >= 2 (step 0 runs eager to find the called modules)")
        args.append("--trainer.callbacks+=benchmarks.train_throughput.CompileCalledModules")
    args.append(_probe_arg(probe, ctx.warmup, 0))
    return args


def run_train_cell(ctx: Context, cell: TrainCell) -> dict[str, Any]:
    """Train ``cell`` for ``warmup + steps`` steps through the CLI and return its throughput, memory and MFU."""
    slug = cell.id.replace("/", "_")
    probe = ctx.work / "probes" / f"{slug}.json"
    probe.unlink(missing_ok=True)
    args = train_args(ctx, cell, probe)
    if cell.name == "hfgi":
        write_random_arcface(arcface_path(ctx))
    wall = _run_fit(ctx, args, f"python -m main fit ({cell.id})", slug, subprocess_=not ctx.dry_run)
    if not probe.is_file():
        raise RuntimeError(f"{cell.id}: the run ended without the StepProbe report {probe} (fit did not reach its end)")
    report = json.loads(probe.read_text())
    timed = report["durations_s"][ctx.warmup:]
    if report["global_step"] != ctx.warmup + ctx.steps or not timed:
        raise RuntimeError(f"{cell.id}: ran {report['global_step']} steps, expected {ctx.warmup + ctx.steps}")
    median = statistics.median(timed)
    batch_seen = report["images"][-1]
    flops = report["flops_per_step"]
    peak = report["peak_memory_bytes"]
    return {
        "kind": "train",
        "config": cell.tiny_config if ctx.dry_run else cell.config,
        "overrides": list(cell.overrides) + (["--model.init_args.arcface_checkpoint=<random-init IR-SE50 file>"] if cell.name == "hfgi" else []),
        "precision": cell.precision,
        "mode": cell.mode,
        "batch": batch_seen,
        "images_per_s": batch_seen / median,
        "ms_per_step": 1000 * median,
        "ms_per_step_min": 1000 * min(timed),
        "timed_steps": len(timed),
        "warmup_steps": ctx.warmup,
        "warmup_s": report["warmup_s"],
        "peak_memory_gib": None if peak is None else peak / 2**30,
        "flops_per_step": flops,
        "tflops_per_s": None if not flops else flops / median / 1e12,
        "mfu": ctx.mfu(flops, median),
        "trainable_params_m": report["trainable_params"] / 1e6,
        "compiled_modules": report["compiled"],
        "wall_s": wall,
    }


def arcface_path(ctx: Context) -> Path:
    """Where the run keeps its random-init ArcFace file."""
    return ctx.work / "weights" / "model_ir_se50_random.pth"


def write_random_arcface(path: Path) -> Path:
    """A random-init ArcFace IR-SE50 state dict in the layout of ``model_ir_se50.pth`` (the identity
    loss costs what it costs with the official weights); written once."""
    if not path.is_file():
        from networks.hfgi.arcface import ArcFaceBackbone

        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(ArcFaceBackbone().state_dict(), path)
    return path


# --------------------------------------------------------------------------- 2. three-stage inpainting
def _inpaint_inputs(batch: int, size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return image, mask.to(device)


def count_inpaint_flops(model, image, mask, steps: list[int], ctx: Context) -> dict[str, Any]:
    """FLOPs of one :func:`sample_c2f` call with ``steps``: counted for min(2, T_s) steps per stage,
    plus ``T_s - 2`` times the counted FLOPs of one step of stage ``s``."""
    from torch.utils.flop_counter import FlopCounterMode

    from diffusion.c2f_sampling import sample_c2f

    counted = [min(2, s) for s in steps]
    marks: list[tuple[int, int]] = []
    counter = FlopCounterMode(display=False)
    with counter, ctx.autocast():
        sample_c2f(model, image, mask, steps=counted, generator=torch.Generator(ctx.device).manual_seed(0),
                   callback=lambda info: marks.append((info["stage"], counter.get_total_flops())))
    total = counter.get_total_flops()
    per_step = []
    for s in range(len(steps)):
        totals = [flops for stage, flops in marks if stage == s]
        per_step.append(totals[1] - totals[0] if len(totals) >= 2 else 0)
    full = total + sum((t - c) * f for t, c, f in zip(steps, counted, per_step))
    return {"flops": int(full), "counted_steps": counted, "counted_flops": int(total), "flops_per_step_by_stage": per_step}


def run_inpaint(ctx: Context) -> dict[str, Any]:
    """Three-stage C2F inpainting: s/image at batch 1 and the largest batch that fits, batched vs two-forward CFG, MFU."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.c2f_sampling import build
    from diffusion.c2f_sampling import sample_c2f

    torch.manual_seed(0)
    model = build("tiny" if ctx.dry_run else "full").model.to(ctx.device).eval()
    steps = DRY_SAMPLING_STEPS if ctx.dry_run else C2F_SAMPLING_STEPS
    size = ctx.inpaint_size or model.resolutions[-1]
    model.check_size(size, size, "gpu_check --inpaint-size")
    n = model.num_stages
    one = [1] * n

    def run(batch: int, run_steps: list[int], batched: bool) -> dict[str, Any]:
        image, mask = _inpaint_inputs(batch, size, ctx.device)
        ctx.sync()
        if ctx.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        with ctx.autocast():
            out, _ = sample_c2f(model, image, mask, steps=run_steps, cfg_batched=batched,
                                generator=torch.Generator(ctx.device).manual_seed(0))
        ctx.sync()
        seconds = time.perf_counter() - t0
        if not torch.isfinite(out).all():
            raise FloatingPointError(f"sample_c2f returned non-finite values (batch {batch}, steps {run_steps})")
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30 if ctx.device == "cuda" else None
        return {"batch": batch, "seconds": seconds, "seconds_per_image": seconds / batch, "peak_memory_gib": peak}

    def timed(batch: int, batched: bool) -> dict[str, Any]:
        run(batch, one, batched)  # warm-up at this shape
        r = run(batch, steps, batched)
        r["mfu"] = ctx.mfu(flops["flops"] * batch, r["seconds"])
        return r

    run(1, one, True)  # warm-up (kernels, allocator)
    image, mask = _inpaint_inputs(1, size, ctx.device)
    flops = count_inpaint_flops(model, image, mask, steps, ctx)
    if ctx.dry_run:  # check the scaling against a direct count of the whole run
        counter = FlopCounterMode(display=False)
        with counter, ctx.autocast():
            sample_c2f(model, image, mask, steps=steps, generator=torch.Generator(ctx.device).manual_seed(0))
        flops["flops_direct"] = int(counter.get_total_flops())
    record: dict[str, Any] = {
        "kind": "inpaint", "config": "configs/c2f/tiny.yaml" if ctx.dry_run else "configs/c2f/places2.yaml",
        "size": size, "stage_sizes": [size * r // model.resolutions[-1] for r in model.resolutions], "steps": steps,
        "dtype": "bf16 autocast" if ctx.device == "cuda" else "fp32",
        "flops_per_image": flops["flops"], "flops_method": "counted at 2 steps per stage + (T_s - 2) x one counted step",
        "flops_detail": flops,
    }
    b1 = {"batched": timed(1, True), "two_forward": timed(1, False)}
    record["batch1"] = b1
    record["seconds_per_image_batch1"] = b1["batched"]["seconds_per_image"]
    record["cfg_two_forward_over_batched_batch1"] = b1["two_forward"]["seconds"] / b1["batched"]["seconds"]

    largest, stop = 1, f"reached --max-batch {ctx.max_batch}"
    b = 2
    while b <= ctx.max_batch:
        if ctx.remaining() < 2 * b1["batched"]["seconds"] * b:
            stop = f"stopped before batch {b}: not enough budget left to time it"
            break
        try:
            run(b, one, True)
            largest = b
        except torch.cuda.OutOfMemoryError:
            stop = f"out of memory at batch {b} (batched CFG, one step per stage)"
            cleanup()
            break
        b *= 2
    record["max_batch"] = largest
    record["max_batch_search"] = stop
    if largest > 1:
        at_max: dict[str, Any] = {}
        for mode, batched in (("batched", True), ("two_forward", False)):
            estimate = 1.5 * b1[mode]["seconds"] * largest
            if ctx.remaining() < estimate:
                at_max[mode] = {"status": "skipped", "reason": f"about {estimate:.0f} s needed, {ctx.remaining():.0f} s of budget left"}
                continue
            try:
                at_max[mode] = timed(largest, batched)
            except torch.cuda.OutOfMemoryError:
                at_max[mode] = {"status": "OOM"}
                cleanup()
        record["at_max_batch"] = at_max
        if "seconds_per_image" in at_max.get("batched", {}):
            record["seconds_per_image_max_batch"] = at_max["batched"]["seconds_per_image"]
        if all("seconds" in at_max.get(m, {}) for m in ("batched", "two_forward")):
            record["cfg_two_forward_over_batched_max_batch"] = at_max["two_forward"]["seconds"] / at_max["batched"]["seconds"]
    return record


# --------------------------------------------------------------------------- 3. attention
def run_attention(ctx: Context) -> dict[str, Any]:
    """Linear vs SDPA vs explicit softmax in one GatedLinearAttention layer: ms and peak memory per token count."""
    from benchmarks.attention import KINDS, measure

    channels, heads = (16, 2) if ctx.dry_run else (256, 4)
    rows = []
    for backward in (False, True):
        for side in ctx.attention_sides:
            for kind in KINDS:
                row = {"pass": "forward+backward" if backward else "forward", "side": side, "tokens": side * side, "kind": kind}
                try:
                    with ctx.autocast():
                        r = measure(kind, side, channels, heads, 1, ctx.device, ctx.repeats, backward)
                    row.update(status="ok", ms=r["ms"], peak_mib=r["peak_mb"] if ctx.device == "cuda" else None)
                except torch.cuda.OutOfMemoryError:
                    row.update(status="OOM", ms=None, peak_mib=None)
                cleanup()
                rows.append(row)
    ratios = []
    for backward in ("forward", "forward+backward"):
        for side in ctx.attention_sides:
            by_kind = {r["kind"]: r for r in rows if r["pass"] == backward and r["side"] == side}
            lin = by_kind["linear"]["ms"]
            ratios.append({
                "pass": backward, "side": side, "tokens": side * side,
                "sdpa_over_linear": None if by_kind["softmax_sdpa"]["ms"] is None or not lin else by_kind["softmax_sdpa"]["ms"] / lin,
                "matmul_over_linear": None if by_kind["softmax_matmul"]["ms"] is None or not lin else by_kind["softmax_matmul"]["ms"] / lin,
            })
    return {"kind": "attention", "channels": channels, "heads": heads, "batch": 1,
            "dtype": "bf16 autocast (linear attention accumulates in fp32)" if ctx.device == "cuda" else "fp32",
            "repeats": ctx.repeats, "rows": rows, "ratios": ratios}


# --------------------------------------------------------------------------- 4. generators
def time_forward(fn: Callable[[], Any], ctx: Context) -> dict[str, Any]:
    """Median / min milliseconds of ``fn()`` over ``ctx.repeats`` calls after one warm-up, and its peak extra CUDA memory."""
    with torch.inference_mode():
        fn()
        ctx.sync()
        if ctx.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times = []
        for _ in range(ctx.repeats):
            t0 = time.perf_counter()
            fn()
            ctx.sync()
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if ctx.device == "cuda" else None
    return {"ms": 1000 * statistics.median(times), "ms_min": 1000 * min(times), "peak_mib": peak}


def run_stylegan2_hfgi(ctx: Context) -> dict[str, Any]:
    """StyleGAN2 forward without / with HFGI's fusion, and a whole HFGI reconstruction (ms per image).

    The official architecture (config-f 1024, e4e IR-SE50, E_c, ADA) with random weights; the fusion
    conditions are E_c's own output for the image's distortion map.
    """
    from networks.hfgi.pipeline import HFGIPipeline

    torch.manual_seed(0)
    kwargs = dict(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, max_channels=32, resolution=64) if ctx.dry_run else {}
    pipe = HFGIPipeline.build(**kwargs).to(ctx.device).eval()
    x = torch.rand(1, 3, pipe.resolution, pipe.resolution, device=ctx.device) * 2 - 1
    with torch.inference_mode():
        w = pipe.invert(x)
        _, conditions = pipe.consult(x - pipe.low_fidelity(w), pipe.low_fidelity(w))
    plain = time_forward(lambda: pipe.synthesize(w), ctx)
    fused = time_forward(lambda: pipe.synthesize(w, conditions), ctx)
    recon = time_forward(lambda: pipe.reconstruct(x), ctx)
    return {
        "kind": "stylegan2_hfgi", "size": pipe.generator.size, "fusion_layer": pipe.generator.fusion_layer, "batch": 1, "dtype": "fp32",
        "stylegan2_ms": plain["ms"], "stylegan2_fused_ms": fused["ms"], "stylegan2_fused_peak_mib": fused["peak_mib"],
        "hfgi_reconstruct_ms": recon["ms"], "hfgi_reconstruct_peak_mib": recon["peak_mib"],
        "architecture": f"tiny {kwargs}" if ctx.dry_run else "official (config-f 1024, e4e IR-SE50), random weights",
    }


def run_big_lama(ctx: Context) -> dict[str, Any]:
    """big-lama's FFC-ResNet generator forward at 512 and 1024 (ms per image)."""
    from networks.lama.ffc import BIG_LAMA_CONFIG, FFCResNetGenerator

    torch.manual_seed(0)
    gen = FFCResNetGenerator(**BIG_LAMA_CONFIG).to(ctx.device).eval()
    rows = []
    for size in ((32, 64) if ctx.dry_run else (512, 1024)):
        image, mask = _inpaint_inputs(1, size, ctx.device)
        x = torch.cat([image * (1 - mask), mask], dim=1)
        rows.append({"size": size, **time_forward(lambda: gen(x), ctx)})
        cleanup()
    return {"kind": "big_lama", "batch": 1, "dtype": "fp32", "rows": rows}


# --------------------------------------------------------------------------- 5. DDP
def ddp_args(ctx: Context, probe: Path) -> list[str]:
    """The arguments after ``python -m main fit`` of the one-process DDP run."""
    config = ROOT / "configs" / "c2f" / "tiny.yaml"
    return ["--config", str(config), "--model.init_args.train_stages=[2]", "--trainer.strategy=ddp", "--trainer.devices=1",
            f"--trainer.accelerator={'cpu' if ctx.dry_run else 'gpu'}", f"--trainer.max_steps={DDP_STEPS}",
            "--data.init_args.batch_size=2", *_common_fit_args(ctx, "ddp"),
            *_synthetic_args(ctx, int(_config_data(config)["resolution"]), 2), _probe_arg(probe, 1, None)]


def run_ddp(ctx: Context) -> dict[str, Any]:
    """``python -m main fit`` with ``--trainer.strategy=ddp`` on one device; checks the backend (NCCL on CUDA)."""
    probe = ctx.work / "probes" / "ddp.json"
    probe.unlink(missing_ok=True)
    args = ddp_args(ctx, probe)
    wall = _run_fit(ctx, args, "python -m main fit --trainer.strategy=ddp", "ddp", subprocess_=True)
    if not probe.is_file():
        raise RuntimeError(f"the DDP run exited 0 without the StepProbe report {probe}")
    report = json.loads(probe.read_text())
    expected = "gloo" if ctx.dry_run else "nccl"
    dist = report["distributed"] or {}
    if dist.get("backend") != expected or dist.get("world_size") != 1 or report["global_step"] != DDP_STEPS:
        raise RuntimeError(f"DDP run: expected backend {expected}, world size 1 and {DDP_STEPS} steps; got {dist} and "
                           f"{report['global_step']} steps (strategy {report['strategy']})")
    return {"kind": "ddp", "config": "configs/c2f/tiny.yaml train_stages=[2]", "backend": dist["backend"], "world_size": 1,
            "strategy": report["strategy"], "steps": report["global_step"], "wall_s": wall}


# --------------------------------------------------------------------------- item list and runner
@dataclass(frozen=True)
class Item:
    """One independently recorded check."""

    id: str
    run: Callable[[Context], dict[str, Any]]
    local: bool  # runs in this process (or an isolated copy of this script); False: starts its own subprocess
    cap_s: float = 180.0  # its subprocess is killed after this long (a hang must not eat the whole budget)


def items_for(dry_run: bool) -> list[Item]:
    """The items of a run, in order (most important first)."""
    def train(cells: list[TrainCell]) -> list[Item]:
        return [Item(c.id, lambda ctx, c=c: run_train_cell(ctx, c), False, 300.0 if c.mode == "compile" else 180.0)
                for c in cells if not (dry_run and c.mode == "compile")]

    rest = [
        Item("inpaint/c2f_1024", run_inpaint, True, 240.0),
        Item("attention", run_attention, True, 120.0),
        Item("generators/stylegan2_hfgi", run_stylegan2_hfgi, True, 120.0),
        Item("generators/big_lama", run_big_lama, True, 120.0),
        Item("ddp", run_ddp, False, 120.0),
    ]
    return train(BASE_CELLS) + rest + train(EXTRA_CELLS)


def selected(item_id: str, patterns: list[str] | None) -> bool:
    """Whether ``--only`` patterns (ids, ``/``-prefixes or globs) select ``item_id``."""
    if not patterns:
        return True
    return any(item_id == p or item_id.startswith(p.rstrip("/") + "/") or fnmatch.fnmatchcase(item_id, p) for p in patterns)


def run_isolated(item: Item, ctx: Context) -> dict[str, Any]:
    """Run a local item in a fresh copy of this script (a crash or hang cannot take the others down)."""
    out = ctx.work / "items" / f"{item.id.replace('/', '_')}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), *ctx.argv, "--work-dir", str(ctx.work),
           "--budget-s", f"{max(ctx.remaining(), 1.0):.0f}", "--_item", item.id, "--_item-out", str(out)]
    if ctx.peak_tflops is not None:
        cmd += ["--peak-tflops", str(ctx.peak_tflops)]
    run_child(cmd, f"gpu_check item {item.id}", ctx.work / "logs" / f"{item.id.replace('/', '_')}.log", ctx.child_timeout())
    return json.loads(out.read_text())


def run_item(item: Item, ctx: Context) -> dict[str, Any]:
    """Run one item; never raises: ``{"status": "ok" | "failed", ..., "seconds"}``."""
    t0 = time.perf_counter()
    ctx.cap_s = item.cap_s
    try:
        figures = run_isolated(item, ctx) if item.local and ctx.isolate else item.run(ctx)
        record = {"status": "ok", **figures}
    except Exception as err:  # noqa: BLE001 - every failure is recorded and the run goes on
        record = {"status": "failed", "error": describe_error(err)}
    finally:
        cleanup()
    record["seconds"] = time.perf_counter() - t0
    return record


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (a cut-short run never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _gib(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} GiB"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def summary_line(item_id: str, r: dict[str, Any]) -> str:
    """One readable line per item."""
    head = f"{item_id:<28} {r['status']:<8}"
    if r["status"] == "skipped":
        return f"{head} {r['reason']}"
    if r["status"] == "failed":
        return f"{head} {r['error']['type']}: {r['error']['message'][:200]}"
    kind = r.get("kind")
    if kind == "train":
        tf = "-" if r["tflops_per_s"] is None else f"{r['tflops_per_s']:.3g}"
        return (f"{head} {r['images_per_s']:.2f} img/s (batch {r['batch']}), {r['ms_per_step']:.0f} ms/step, "
                f"peak {_gib(r['peak_memory_gib'])}, {tf} TFLOP/s, MFU {_pct(r['mfu'])}")
    if kind == "inpaint":
        text = (f"{head} {r['seconds_per_image_batch1']:.2f} s/image at batch 1, two-forward/batched CFG "
                f"{r['cfg_two_forward_over_batched_batch1']:.2f}x, MFU {_pct(r['batch1']['batched']['mfu'])}; "
                f"max batch {r['max_batch']}")
        if "seconds_per_image_max_batch" in r:
            text += f": {r['seconds_per_image_max_batch']:.2f} s/image"
        return text
    if kind == "attention":
        parts = [f"{x['side']}^2 {x['pass'][:3]} sdpa/linear " + ("OOM" if x["sdpa_over_linear"] is None else f"{x['sdpa_over_linear']:.2f}")
                 for x in r["ratios"]]
        return f"{head} " + "; ".join(parts)
    if kind == "stylegan2_hfgi":
        return (f"{head} StyleGAN2 {r['size']}: {r['stylegan2_ms']:.1f} ms, with fusion {r['stylegan2_fused_ms']:.1f} ms; "
                f"HFGI reconstruction {r['hfgi_reconstruct_ms']:.1f} ms")
    if kind == "big_lama":
        return f"{head} " + ", ".join(f"{x['size']}px {x['ms']:.1f} ms" for x in r["rows"])
    if kind == "ddp":
        return f"{head} backend {r['backend']}, {r['steps']} steps, {r['wall_s']:.1f} s wall"
    return head


def _settings_argv(args: argparse.Namespace) -> list[str]:
    """The settings options of this run, as passed on to an isolated item."""
    argv = ["--warmup", str(args.warmup), "--steps", str(args.steps), "--max-batch", str(args.max_batch),
            "--repeats", str(args.repeats), "--attention-sides", *map(str, args.attention_sides)]
    if args.inpaint_size:
        argv += ["--inpaint-size", str(args.inpaint_size)]
    if args.dry_run:
        argv.append("--dry-run")
    return argv


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny configs and sizes: checks every code path in about a minute")
    p.add_argument("--out", default=None, help=f"JSON to write (default {RESULT.relative_to(ROOT)}; dry run: a temporary file)")
    p.add_argument("--only", nargs="+", default=None, metavar="ID", help="run only these items (ids, prefixes like train/c2f_s2, or globs)")
    p.add_argument("--merge", action="store_true", help="keep the other items of an existing --out JSON of the same GPU")
    p.add_argument("--budget-s", type=float, default=390.0, help="start no new item after this many seconds (the rest: skipped)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak TFLOP/s for MFU (default: table by GPU name)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="run inpaint / attention / generator items in a subprocess (default: yes on a GPU, no for --dry-run)")
    p.add_argument("--work-dir", default=None, help="synthetic shards, run dirs and logs (default: a temporary folder, removed after)")
    p.add_argument("--warmup", type=int, default=None, help="untimed training steps first (default 3; dry run 1)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 6; dry run 1)")
    p.add_argument("--max-batch", type=int, default=None, help="largest inpainting batch tried (default 16; dry run 2)")
    p.add_argument("--inpaint-size", type=int, default=None, help="inpainting image size (default: the config's top resolution)")
    p.add_argument("--attention-sides", type=int, nargs="+", default=None, help="attention feature-map sides (default 64 128 256; dry run 8)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per forward measurement (default 5; dry run 1)")
    p.add_argument("--_item", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_item-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    dry = args.dry_run
    for name, full, tiny in (("warmup", 3, 1), ("steps", 6, 1), ("max_batch", 16, 2), ("repeats", 5, 1)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if dry else full)
    if args.attention_sides is None:
        args.attention_sides = [8] if dry else [64, 128, 256]
    for name in ("steps", "max_batch", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 1:
        p.error(f"--warmup must be >= 1 (step 0 is the FLOP-counted step), got {args.warmup}")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        p.error(f"--peak-tflops must be > 0, got {args.peak_tflops}")
    if args.isolate is None:
        args.isolate = not dry
    if args.out is None:
        args.out = str(Path(tempfile.gettempdir()) / f"gpu_check_dry_run_{os.getpid()}.json") if dry else str(RESULT)
    if dry and Path(args.out).resolve() == RESULT.resolve():
        p.error(f"--dry-run never writes {RESULT.relative_to(ROOT)} (it holds the GPU figures); give another --out")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns the exit status (1 when an item failed)."""
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible. Run it on a GPU machine, or use --dry-run to check the code paths on CPU.",
              file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    if args.dry_run:  # one thread: tiny ops gain nothing from more, and a busy machine makes OpenMP threads wait
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # and the subprocesses
    if device == "cuda":
        torch.set_float32_matmul_precision("high")  # as the CLI does on CUDA
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    peak = args.peak_tflops if args.peak_tflops is not None else peak_bf16_tflops(gpu)
    items = items_for(args.dry_run)
    for pattern in args.only or []:
        if not any(selected(i.id, [pattern]) for i in items):
            print(f"gpu_check: --only {pattern!r} matches no item of this run; items: {', '.join(i.id for i in items)}", file=sys.stderr)
            return 2

    def context(work: Path) -> Context:
        return Context(dry_run=args.dry_run, device=device, work=work, start=time.monotonic(), budget_s=args.budget_s,
                       peak_tflops=peak, isolate=args.isolate, warmup=args.warmup, steps=args.steps, max_batch=args.max_batch,
                       inpaint_size=args.inpaint_size, attention_sides=args.attention_sides, repeats=args.repeats,
                       argv=_settings_argv(args))

    if args._item:  # an isolated item (run_isolated): run it here and hand the figures back
        item = next((i for i in items if i.id == args._item), None)
        if item is None or not args.work_dir or not args._item_out:
            raise SystemExit(f"gpu_check: --_item needs a known item id, --work-dir and --_item-out (got {args._item!r})")
        write_json(Path(args._item_out), item.run(context(Path(args.work_dir))))
        return 0

    from benchmarks.run_all import machine

    out = Path(args.out)
    previous: dict[str, Any] = {}
    if args.merge and out.is_file():
        old = json.loads(out.read_text())
        if old.get("gpu") == gpu and bool(old.get("dry_run")) == args.dry_run:
            previous = old.get("items", {})
        else:
            print(f"gpu_check: --merge ignored: {out} is from {old.get('gpu')!r} (dry run {old.get('dry_run')})", file=sys.stderr)
    info: dict[str, Any] = {
        "benchmark": "gpu_check",
        "dry_run": args.dry_run,
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "peak_bf16_tflops": peak,
        "peak_source": "--peak-tflops" if args.peak_tflops is not None else ("table" if peak else "unknown GPU: no MFU"),
        "budget_s": args.budget_s,
        "settings": {"warmup": args.warmup, "steps": args.steps, "max_batch": args.max_batch, "repeats": args.repeats,
                     "attention_sides": args.attention_sides, "inpaint_size": args.inpaint_size, "isolate": args.isolate},
        "items": {},
    }
    own_work = args.work_dir is None
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu_check_"))
    ctx = context(work)
    print(f"gpu_check{' (dry run, CPU)' if args.dry_run else ''}: {gpu or 'cpu'}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, peak {peak} TFLOP/s ({info['peak_source']}), budget {args.budget_s:.0f} s; work dir {work}",
          flush=True)
    try:
        for item in items:
            if not selected(item.id, args.only):
                record = previous.get(item.id) or {"status": "skipped", "reason": "not selected by --only"}
            elif ctx.remaining() <= 0:
                record = {"status": "skipped", "reason": f"budget of {args.budget_s:.0f} s used up ({ctx.elapsed():.0f} s elapsed)"}
            else:
                print(f"[{ctx.elapsed():6.0f} s] {item.id} ...", flush=True)
                record = run_item(item, ctx)
            info["items"][item.id] = record
            info["elapsed_s"] = ctx.elapsed()
            write_json(out, info)
            print("          " + summary_line(item.id, record), flush=True)
    finally:
        if own_work:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    counts = {s: sum(r["status"] == s for r in info["items"].values()) for s in ("ok", "failed", "skipped")}
    print(f"\nSummary ({gpu or 'cpu'}, {ctx.elapsed():.0f} s; {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped):")
    for item_id, record in info["items"].items():
        print("  " + summary_line(item_id, record))
    print(f"wrote {out}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
