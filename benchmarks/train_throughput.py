"""Training throughput (images/s) and peak memory of each training module, fp32 vs bf16 autocast, eager vs torch.compile.

Modules are built exactly as ``python -m main fit`` builds them, from their configs (default: the
tiny CPU configs, which generate their synthetic shards under ``data/`` on first use):

| case | config | what trains |
|---|---|---|
| ``lcg`` | ``configs/lcg/tiny.yaml`` | LCG pretraining (U-Net + category embedding) |
| ``c2f_s0`` / ``c2f_s1`` / ``c2f_s2`` | ``configs/c2f/tiny.yaml`` + ``train_stages=[k]`` | one C2F stage (+ its guidance combiner) |
| ``hfgi`` | ``configs/hfgi/tiny.yaml`` | HFGI consultation encoder + ADA on frozen StyleGAN2 / e4e |

Each case runs a real Lightning ``Trainer.fit`` (no validation, no logger, no checkpoints; the
config's loss-term and EMA callbacks are kept because they are part of a training step) for
``--warmup`` + ``--steps`` optimizer steps; the median time of the last ``--steps`` steps (batch
start to batch end, CUDA-synchronised; robust to other jobs on a shared machine) gives images/s. ``--precision``: ``32-true`` and/or ``bf16-mixed``
(Lightning autocast). ``--compile``: ``eager`` and/or ``compile`` (after one eager step,
``nn.Module.compile()`` on the outermost submodules that the training step called; compilation
happens in the warm-up steps and is excluded from the timing; ``warmup_s`` reports it, measured with an empty
inductor cache per case; ``compiled_graphs`` counts the graphs dynamo captured).

Peak memory: CUDA ``torch.cuda.max_memory_allocated`` over the timed steps; CPU: every case runs in
a fresh subprocess and reports the growth of the process high-water mark (``ru_maxrss``) from just
before ``fit`` to its end as ``peak_mb`` (0 when the high-water mark was set while building the
module), and the high-water mark itself as ``peak_rss_mb`` (torch's CPU allocator is invisible to
``tracemalloc``).

    python benchmarks/train_throughput.py                                   # CPU, tiny configs, all cases
    python benchmarks/train_throughput.py --device cuda --batch-size 32      # GPU, same modules, bigger batches
    python benchmarks/train_throughput.py --cases c2f_s2 --precision bf16-mixed --compile eager compile

Prints a table and writes ``benchmarks/results/train_throughput.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from lightning.pytorch import Callback, Trainer  # noqa: E402

CASES: dict[str, tuple[str, list[str]]] = {
    "lcg": ("configs/lcg/tiny.yaml", []),
    "c2f_s0": ("configs/c2f/tiny.yaml", ["--model.init_args.train_stages=[0]"]),
    "c2f_s1": ("configs/c2f/tiny.yaml", ["--model.init_args.train_stages=[1]"]),
    "c2f_s2": ("configs/c2f/tiny.yaml", ["--model.init_args.train_stages=[2]"]),
    "hfgi": ("configs/hfgi/tiny.yaml", []),
}
PRECISIONS = ("32-true", "bf16-mixed")
COMPILE_MODES = ("eager", "compile")


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class StepTimer(Callback):
    """Times each training batch (start to end) and counts images; CUDA-synchronised."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.durations: list[float] = []
        self.images: list[int] = []
        self.warmup_seconds = 0.0
        self._t0 = 0.0
        self._fit_start = 0.0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_start(self, trainer, pl_module) -> None:
        self._fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        if len(self.durations) == self.warmup:
            self.warmup_seconds = time.perf_counter() - self._fit_start
            if pl_module.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self.durations.append(time.perf_counter() - self._t0)
        image = batch["image"] if isinstance(batch, dict) else batch[0]
        self.images.append(int(image.shape[0]))


class CompileCalledModules(Callback):
    """After the first (eager) training step, ``.compile()`` the outermost submodules that step called.

    Forward pre-hooks record which submodules run during step 0; the outermost of them (no called
    ancestor: the U-Net / denoiser wrappers, combiners, encoders, loss networks actually used by
    ``training_step``) get ``nn.Module.compile()``, so every later step runs them compiled.
    """

    def __init__(self) -> None:
        self.compiled: list[str] = []
        self._called: set[str] = set()
        self._handles: list = []

    def on_train_start(self, trainer, pl_module) -> None:
        for name, module in pl_module.named_modules():
            if name and any(True for _ in module.parameters()):
                self._handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._called.add(n)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        modules = dict(pl_module.named_modules())
        for name in sorted(self._called):
            parts = name.split(".")
            if any(".".join(parts[:i]) in self._called for i in range(1, len(parts))):
                continue
            modules[name].compile()
            self.compiled.append(name)


def measure(case: str, precision: str, mode: str, device: str, steps: int, warmup: int, batch_size: int | None) -> dict:
    """Build ``case`` from its config and time ``steps`` training steps after ``warmup`` (in this process)."""
    from callbacks.loss_term import LossTerm
    from main import cli_main

    config, overrides = CASES[case]
    args = ["--config", str(ROOT / config), *overrides, "--trainer.logger=false"]
    if batch_size is not None:
        args.append(f"--data.init_args.batch_size={batch_size}")
    cli = cli_main(args, run=False)
    model, datamodule = cli.model, cli.datamodule
    keep = [cb for cb in cli.trainer.callbacks if isinstance(cb, LossTerm) or type(cb).__name__ == "EMA"]
    compiler = CompileCalledModules() if mode == "compile" else None
    if compiler is not None and warmup < 2:
        raise ValueError("--compile compile needs --warmup >= 2 (step 0 runs eager to find the called modules)")
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=precision,
            max_steps=warmup + steps, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[*keep, *([compiler] if compiler else []), timer], default_root_dir=tmp,
        )
        rss_before = _max_rss_mb()
        trainer.fit(model, datamodule=datamodule)
        rss_after = _max_rss_mb()
    timed = timer.durations[warmup:]
    if not timed:
        raise RuntimeError(f"{case}: the run ended after {len(timer.durations)} steps, fewer than warmup + 1")
    median = statistics.median(timed)
    batch = timer.images[-1]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else rss_after - rss_before
    compiled = compiler.compiled if compiler is not None else []
    graphs = None
    if compiled:
        from torch._dynamo.utils import counters

        graphs = int(counters["stats"]["unique_graphs"])
    return {
        "images_per_s": batch / median,
        "ms_per_step": 1000 * median,
        "ms_per_step_min": 1000 * min(timed),
        "batch": batch,
        "peak_mb": peak,
        "peak_rss_mb": rss_after if device == "cpu" else None,
        "warmup_s": timer.warmup_seconds,
        "compiled_graphs": graphs,
        "trainable_params_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "compiled": compiled,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--precision", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--compile", nargs="+", default=list(COMPILE_MODES), choices=COMPILE_MODES)
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per case (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--batch-size", type=int, default=None, help="override the configs' batch size")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    p.add_argument("--single", nargs=3, metavar=("CASE", "PRECISION", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.chdir(ROOT)  # the tiny configs generate their synthetic shards under data/

    if args.single:
        case, precision, mode = args.single
        print(json.dumps(measure(case, precision, mode, args.device, args.steps, args.warmup, args.batch_size)))
        return {}

    load_before = os.getloadavg()
    rows = []
    print(f"{'case':>8} {'precision':>11} {'mode':>8} {'img/s':>9} {'ms/step':>9} {'batch':>6} {'peak MB':>9} {'warmup s':>9}")
    timing_fields = {"images_per_s": None, "ms_per_step": None, "ms_per_step_min": None, "batch": None, "peak_mb": None,
                     "peak_rss_mb": None, "warmup_s": None, "compiled_graphs": None}
    for case in args.cases:
        for precision in args.precision:
            for mode in args.compile:
                cmd = [sys.executable, __file__, "--single", case, precision, mode, "--device", args.device,
                       "--steps", str(args.steps), "--warmup", str(args.warmup)]
                if args.batch_size is not None:
                    cmd += ["--batch-size", str(args.batch_size)]
                with tempfile.TemporaryDirectory() as cache:  # compile time without earlier runs' kernels
                    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache}
                    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
                if proc.returncode != 0:
                    lines = (proc.stderr or "").strip().splitlines()
                    result = {**timing_fields, "error": lines[-1][:300] if lines else f"rc {proc.returncode}"}
                else:
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
                row = {"case": case, "precision": precision, "mode": mode, **result}
                rows.append(row)

                def f(v, fmt):
                    return "-" if v is None else format(v, fmt)

                print(f"{case:>8} {precision:>11} {mode:>8} {f(row['images_per_s'], '.2f'):>9} {f(row['ms_per_step'], '.1f'):>9} "
                      f"{f(row['batch'], 'd'):>6} {f(row['peak_mb'], '.0f'):>9} {f(row['warmup_s'], '.1f'):>9} {row.get('error', '')}",
                      flush=True)
    info = {
        "benchmark": "train_throughput",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": args.steps, "warmup": args.warmup, "batch_size_override": args.batch_size,
        "cpu_count": os.cpu_count(),
        "load_average_1m": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "memory": "cuda max_memory_allocated over the timed steps" if args.device == "cuda"
        else "peak_mb: ru_maxrss growth over fit (fresh process); peak_rss_mb: ru_maxrss",
        "timing": "median step time of the timed steps; compile: empty inductor cache per case",
        "configs": {c: " ".join([CASES[c][0], *CASES[c][1]]) for c in args.cases},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2))
    print(f"\nwrote {out}")
    return info


if __name__ == "__main__":
    main()
