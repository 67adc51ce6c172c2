"""Three-stage C2F sampling: time and peak memory per image, batched CFG vs two-forward CFG.

Cases:

- ``tiny`` (CPU, and CUDA when available): the model of ``configs/c2f/tiny.yaml`` (16 / 32 / 64 px,
  8-channel U-Nets), 60 / 40 / 30 DDIM steps;
- ``full`` (CUDA only): the U-Nets of ``configs/c2f/places2.yaml`` at 256 / 512 / 1024 px with
  60 / 40 / 30 steps, random weights (the cost does not depend on the weights), bf16 autocast.

- ``demo`` (CPU): the bundled demo model ``assets/c2f_synthetic_demo.ckpt`` (32 / 64 / 128 px, its own
  50 / 30 / 20 steps and gains 1 / 1 / 1) on 128 px images: the gain-1 fast path (``gain1_fast``: one
  conditional forward per step, what sampling does now at gain 1) against the doubled batch that every
  step ran before (``gain1_doubled``: gains ``1 + 1e-6``, the same result to float precision, forced
  through the doubled-batch CFG).

For each case and CFG mode (``batched``: conditional + unconditional passes as one forward of a
doubled batch; ``two_forward``: two forwards per step; the demo case's two modes above) it runs
:func:`diffusion.c2f_sampling.sample_c2f` on ``--batch`` images after one warm-up call and reports
seconds per image (wall clock, and on the CPU the process's CPU time per image, which a
busy shared machine inflates much less) and peak memory.
Peak memory: CUDA ``torch.cuda.max_memory_allocated`` minus the memory held before the call; CPU:
every case runs in a fresh subprocess and reports the growth of the process high-water mark
(``ru_maxrss``) over the timed call.

    python benchmarks/c2f_sampling.py                 # CPU tiny + demo (+ CUDA tiny / full when a GPU is present)
    python benchmarks/c2f_sampling.py --cases full --device cuda
    python benchmarks/c2f_sampling.py --cases demo --batch 1     # the gain-1 fast path on the demo model

Prints a table and writes ``benchmarks/results/c2f_sampling.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from diffusion.c2f import C2FModel  # noqa: E402
from diffusion.c2f_sampling import sample_c2f  # noqa: E402
from lightning_modules.c2f_diffusion import C2FDiffusionModule  # noqa: E402
from evaluation.rows import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "c2f_sampling.json"
STEPS = [60, 40, 30]


def build(case: str) -> C2FDiffusionModule:
    """The module of the case's config (random weights), with 60 / 40 / 30 sampling steps."""
    cfg_file = {"tiny": "configs/c2f/tiny.yaml", "full": "configs/c2f/places2.yaml"}[case]
    args = yaml.safe_load((ROOT / cfg_file).read_text())["model"]["init_args"]
    keep = ("resolutions", "guidance_gains", "unets", "embedding", "combiner_width", "combiner_depth")
    kwargs = {k: args[k] for k in keep}
    kwargs["unets"] = [{**u, "gradient_checkpointing": False} for u in kwargs["unets"]]
    return C2FDiffusionModule(sampling_steps=STEPS, **kwargs).eval()


MODES = {"tiny": ("batched", "two_forward"), "full": ("batched", "two_forward"), "demo": ("gain1_doubled", "gain1_fast")}
DEMO = ROOT / "assets" / "c2f_synthetic_demo.ckpt"


def run_case(case: str, device: str, mode: str, batch: int) -> dict:
    torch.manual_seed(0)
    model = (C2FModel.from_checkpoint(DEMO) if case == "demo" else build(case).model).to(device).eval()
    size = model.resolutions[-1]
    steps = list(model.sampling.steps) if case == "demo" else STEPS
    gains = None if case != "demo" else [1.0 + (1e-6 if mode == "gain1_doubled" else 0.0)] * model.num_stages
    image = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    mask = torch.zeros(batch, 1, size, size, device=device)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    batched = mode != "two_forward"
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda" and case == "full")

    def once(run_steps: list[int]) -> None:
        with autocast, torch.inference_mode():
            sample_c2f(model, image, mask, "background", run_steps, gains, cfg_batched=batched,
                       generator=torch.Generator(device).manual_seed(0))

    warm = [2] * model.num_stages
    if device == "cuda":
        once(warm)  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        once(steps)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        cpu_seconds = None
        peak = torch.cuda.max_memory_allocated() - base
    else:
        once([1] * model.num_stages)  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t0, c0 = time.perf_counter(), time.process_time()
        once(steps)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    params = sum(p.numel() for p in model.parameters())
    return {
        "case": case, "device": device, "cfg": mode, "batch": batch, "resolutions": model.resolutions,
        "steps": steps, "params": params, "seconds_per_image": seconds / batch,
        "cpu_seconds_per_image": None if cpu_seconds is None else cpu_seconds / batch, "peak_mib_per_image": peak / batch / 2**20,
        "peak_mib": peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=None, help="tiny, demo and/or full (default: tiny and demo on CPU, tiny and full on CUDA)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, + cuda when available)")
    parser.add_argument("--batch", type=int, default=2, help="images per inpaint call")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args._child:
        case, device, mode = args._child
        print(json.dumps(run_case(case, device, mode, args.batch)))
        return

    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        cases = args.cases or (["tiny", "full"] if device == "cuda" else ["tiny", "demo"])
        for case in cases:
            if case == "full" and device != "cuda":
                print(f"skipping full-size case on {device} (GPU only)")
                continue
            for mode in MODES[case]:
                if device == "cpu":  # fresh process: clean high-water mark
                    out = subprocess.run(
                        [sys.executable, __file__, "--batch", str(args.batch), "--threads", str(args.threads), "--_child", case, device, mode],
                        check=True, capture_output=True, text=True,
                    )
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                else:
                    rows.append(run_case(case, device, mode, args.batch))
                r = rows[-1]
                print(f"  measured {case} {device} {mode}: {r['seconds_per_image']:.3f} s/img", flush=True)

    header = f"{'case':6} {'device':6} {'cfg':14} {'resolutions':18} {'steps':12} {'params':>10} {'s/image':>9} {'peak MiB/img':>13}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['case']:6} {r['device']:6} {r['cfg']:14} {'/'.join(map(str, r['resolutions'])):18} "
            f"{'/'.join(map(str, r['steps'])):12} {r['params']:>10,} {r['seconds_per_image']:>9.3f} {r['peak_mib_per_image']:>13.1f}"
        )
    info = {
        "benchmark": "c2f_sampling",
        "torch": torch.__version__,
        "cpu_threads": args.threads,
        "machine": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "rows": rows,
    }
    write_json(RESULTS, info)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
