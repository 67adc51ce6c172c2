"""Time and peak memory of one self-attention layer: linear vs softmax, at 32^2, 64^2, 128^2 tokens.

Kernels inside the same :class:`networks.c2f.linear_attention.GatedLinearAttention` layer
(projections, depthwise conv, norm and gate are identical, only the attention differs):

- ``linear``: ReLU linear attention, O(N) (the U-Net's default);
- ``softmax_sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (fused / memory-efficient
  kernels where the backend has them);
- ``softmax_matmul``: textbook ``softmax(QK^T/sqrt(d))V`` materialising the N x N matrix.

Peak memory: CUDA ``torch.cuda.max_memory_allocated`` minus the memory held before the call; CPU:
each case runs in a fresh subprocess and reports the growth of the process high-water mark
(``resource.getrusage(...).ru_maxrss``) over one call (torch's CPU allocator is invisible to
``tracemalloc``). ``--backward`` measures forward + backward instead of an inference forward.

    python benchmarks/attention.py                      # CPU (or CUDA when available)
    python benchmarks/attention.py --device cuda --channels 128 --heads 4 --backward

Prints a table and writes ``benchmarks/results/attention.json``.
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

from networks.c2f.linear_attention import GatedLinearAttention, softmax_attention  # noqa: E402

KINDS = ("linear", "softmax_sdpa", "softmax_matmul")


class MatmulSoftmaxAttention(GatedLinearAttention):
    """The same layer with the explicit O(N^2)-memory softmax kernel."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return softmax_attention(q, k, v)


def build(kind: str, channels: int, heads: int, device: str) -> torch.nn.Module:
    if kind == "linear":
        layer = GatedLinearAttention(channels, heads=heads, attention="linear")
    elif kind == "softmax_sdpa":
        layer = GatedLinearAttention(channels, heads=heads, attention="softmax")
    elif kind == "softmax_matmul":
        layer = MatmulSoftmaxAttention(channels, heads=heads, attention="softmax")
    else:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    torch.nn.init.normal_(layer.to_out.weight, std=0.02)  # non-zero output so backward does real work
    return layer.to(device)


def run_once(layer: torch.nn.Module, x: torch.Tensor, backward: bool) -> None:
    if backward:
        layer(x).square().mean().backward()
    else:
        with torch.no_grad():
            layer(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def measure(kind: str, side: int, channels: int, heads: int, batch: int, device: str, repeats: int, backward: bool) -> dict:
    """One case in this process: ``{"ms", "peak_mb"}``."""
    torch.manual_seed(0)
    layer = build(kind, channels, heads, device)
    x = torch.randn(batch, channels, side, side, device=device, requires_grad=backward)
    if device == "cuda":
        run_once(layer, x, backward)  # warm-up (kernel selection, cuBLAS workspaces)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_once(layer, x, backward)
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        run_once(layer, torch.randn(batch, channels, 8, 8, requires_grad=backward), backward)  # lazy library init
        layer.zero_grad(set_to_none=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run_once(layer, x, backward)  # first call: its high-water mark is the peak
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # ru_maxrss is KiB on Linux
    times = []
    for _ in range(repeats):
        layer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        run_once(layer, x, backward)
        times.append(time.perf_counter() - start)
    return {"ms": 1000 * sorted(times)[len(times) // 2], "peak_mb": peak_mb}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128], help="feature-map sides (tokens = side^2)")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case (median reported)")
    p.add_argument("--backward", action="store_true", help="time forward + backward")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attention.json"))
    p.add_argument("--single", nargs=2, metavar=("KIND", "SIDE"), help=argparse.SUPPRESS)  # CPU subprocess mode
    args = p.parse_args(argv)

    if args.single:
        kind, side = args.single[0], int(args.single[1])
        print(json.dumps(measure(kind, side, args.channels, args.heads, args.batch, args.device, args.repeats, args.backward)))
        return

    rows = []
    for side in args.sides:
        for kind in args.kinds:
            if args.device == "cpu":
                cmd = [sys.executable, __file__, "--single", kind, str(side), "--device", "cpu", "--channels", str(args.channels),
                       "--heads", str(args.heads), "--batch", str(args.batch), "--repeats", str(args.repeats)]
                if args.backward:
                    cmd.append("--backward")
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    result = {"ms": None, "peak_mb": None, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else f"rc {proc.returncode}"}
                else:
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                try:
                    result = measure(kind, side, args.channels, args.heads, args.batch, "cuda", args.repeats, args.backward)
                except torch.cuda.OutOfMemoryError as err:
                    result = {"ms": None, "peak_mb": None, "error": f"OOM: {str(err).splitlines()[0]}"}
                    torch.cuda.empty_cache()
            rows.append({"side": side, "tokens": side * side, "kind": kind, **result})
            r = rows[-1]
            ms = "-" if r["ms"] is None else f"{r['ms']:.2f}"
            mb = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}"
            print(f"{side:>4}^2 {side * side:>7} {kind:>15} {ms:>10} ms {mb:>10} MB {r.get('error', '')}", flush=True)

    info = {
        "benchmark": "attention",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "channels": args.channels, "heads": args.heads, "batch": args.batch,
        "mode": "forward+backward" if args.backward else "forward (no_grad)",
        "memory": "cuda max_memory_allocated growth" if args.device == "cuda" else "ru_maxrss growth over one call (fresh process)",
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2))
    print(f"\n{info['device']}, {info['mode']}, C={args.channels}, heads={args.heads}, batch={args.batch}; wrote {out}")


if __name__ == "__main__":
    main()
