"""Forward time and peak memory of the pure-PyTorch StyleGAN2 generator at 256 and 1024 px.

Official config-f architecture (style_dim 512, 8 mapping layers, channel multiplier 2), random
weights, batch 1, W+ input, fixed noise buffers, ``torch.inference_mode``. Optional ``--hfgi``
also times the generator with HFGI's (scale, shift) fusion at layer 7 (the 64x64 block).

Peak memory: CUDA ``torch.cuda.max_memory_allocated`` over the forward minus the memory held
before it (weights); CPU: every case runs in a fresh subprocess that reports the growth of the
process high-water mark (``ru_maxrss``) over the forwards (torch's CPU allocator is invisible to
``tracemalloc``), plus the weights' size.

    python benchmarks/stylegan2.py                         # CPU, and CUDA when available
    python benchmarks/stylegan2.py --devices cpu --sizes 256 --repeats 5

Prints a table and writes ``benchmarks/results/stylegan2.json``.
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

from networks.hfgi.stylegan2 import StyleGAN2Generator  # noqa: E402


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(size: int, device: str, repeats: int, batch: int, fused: bool) -> dict:
    """Time ``repeats`` forwards (after one warm-up) and the peak extra memory of a forward."""
    torch.manual_seed(0)
    g = StyleGAN2Generator(size, 512, 8, channel_multiplier=2).to(device).eval()
    weights_mib = sum(t.numel() * t.element_size() for t in g.state_dict().values()) / 2**20
    w = torch.randn(batch, g.n_latent, 512, device=device)
    conditions = None
    if fused:
        r, c = g.fusion_resolution, g.fusion_channels
        conditions = (0.1 * torch.randn(batch, c, r, r, device=device), 0.1 * torch.randn(batch, c, r, r, device=device))

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.inference_mode():
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        rss_before = _maxrss_mib()
        g(w, conditions)  # warm-up (and the memory measurement)
        sync()
        if device.startswith("cuda"):
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peak = _maxrss_mib() - rss_before
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            g(w, conditions)
            sync()
            times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "size": size,
        "device": device,
        "batch": batch,
        "hfgi_fusion": fused,
        "repeats": repeats,
        "forward_ms_median": 1000 * times[len(times) // 2],
        "forward_ms_min": 1000 * times[0],
        "peak_forward_mib": round(peak, 1),
        "weights_mib": round(weights_mib, 1),
        "threads": torch.get_num_threads(),
    }


def _run_case(args: argparse.Namespace, size: int, device: str, fused: bool) -> dict:
    if device == "cpu":  # fresh process: ru_maxrss is a process-lifetime high-water mark
        cmd = [
            sys.executable, __file__, "--_case", f"{size},{device},{int(fused)}",
            "--repeats", str(args.repeats), "--batch", str(args.batch),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    return measure(size, device, args.repeats, args.batch, fused)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hfgi", action="store_true", help="also time the forward with HFGI fusion conditions")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stylegan2.json"))
    parser.add_argument("--_case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._case:
        size, device, fused = args._case.split(",")
        print(json.dumps(measure(int(size), device, args.repeats, args.batch, bool(int(fused)))))
        return []
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    for device in devices:
        for size in args.sizes:
            for fused in ([False, True] if args.hfgi else [False]):
                rows.append(_run_case(args, size, device, fused))
    header = f"{'device':<8}{'size':>6}{'fusion':>8}{'batch':>7}{'forward ms (median)':>22}{'peak fwd MiB':>15}{'weights MiB':>13}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['device']:<8}{r['size']:>6}{str(r['hfgi_fusion']):>8}{r['batch']:>7}"
            f"{r['forward_ms_median']:>22.1f}{r['peak_forward_mib']:>15.1f}{r['weights_mib']:>13.1f}"
        )
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    runs = previous.get("runs", {}) if isinstance(previous, dict) else {}
    for r in rows:  # keep results of other devices (e.g. a CPU run and a GPU run from different machines)
        runs[f"{r['device']}_{r['size']}{'_hfgi' if r['hfgi_fusion'] else ''}"] = {**r, **meta}
    out.write_text(json.dumps({"benchmark": "stylegan2_generator_forward", "runs": runs}, indent=2) + "\n")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
