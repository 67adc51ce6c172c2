"""Run every benchmark script and write BENCHMARKS.md from the JSON files in benchmarks/results/.

Scripts (each prints a table and saves ``benchmarks/results/<name>.json``):

| name | script | measures |
|---|---|---|
| attention | ``benchmarks/attention.py`` | linear vs softmax self-attention over token counts |
| c2f_sampling | ``benchmarks/c2f_sampling.py`` | three-stage C2F sampling latency per image, batched CFG vs two forwards; the demo model's gain-1 fast path |
| predict_speed | ``benchmarks/predict_speed.py`` | ``python -m main predict`` seconds per image with the demo model, before / after the fast path and batching |
| fill_options | ``benchmarks/fill_options.py`` | PixelHacker's inference options (dilation, feather, colour) on object removal with the demo model, against clean plates |
| large_photo | ``benchmarks/large_photo.py`` | a 3000 x 2000 photo: seconds and peak memory per strategy (full / resize / crop), demo C2F model and Telea |
| stylegan2 | ``benchmarks/stylegan2.py`` | StyleGAN2 / HFGI forward time |
| shard_loading | ``benchmarks/shard_loading.py`` | WebDataset shard loading vs raw image decoding |
| train_throughput | ``benchmarks/train_throughput.py`` | training images/s and peak memory per module, fp32 / bf16, eager / compile |
| gpu_check | ``benchmarks/gpu_check.py`` | GPU only: full-size training (images/s, peak memory, MFU), 1024 inpainting, attention, generators, DDP |

    python benchmarks/run_all.py                          # run them all, then write BENCHMARKS.md
    python benchmarks/run_all.py --only attention --args attention="--sides 32 64"
    python benchmarks/run_all.py --report-only            # only re-render BENCHMARKS.md from the JSON files

The commands that produced each JSON file and the machine they ran on are kept in
``benchmarks/results/run_all.json`` and repeated in BENCHMARKS.md. Figures are never typed by hand:
BENCHMARKS.md is generated from the JSON files. ``gpu_check`` runs only where CUDA is available (it
is skipped otherwise); its section of BENCHMARKS.md is rendered from ``benchmarks/results/gpu_check.json``
(GPU, versions, date and command are in that file) and says so when no GPU run has been made yet.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
META = RESULTS / "run_all.json"
SCRIPTS = {
    "attention": "benchmarks/attention.py",
    "c2f_sampling": "benchmarks/c2f_sampling.py",
    "predict_speed": "benchmarks/predict_speed.py",
    "large_photo": "benchmarks/large_photo.py",
    "fill_options": "benchmarks/fill_options.py",
    "stylegan2": "benchmarks/stylegan2.py",
    "shard_loading": "benchmarks/shard_loading.py",
    "train_throughput": "benchmarks/train_throughput.py",
    "gpu_check": "benchmarks/gpu_check.py",
}
GPU_ONLY = {"gpu_check"}
DESCRIPTIONS = {
    "attention": "Self-attention layer: linear vs softmax over token counts",
    "c2f_sampling": "Three-stage C2F sampling latency per image (batched CFG vs two forwards; gain-1 fast path on the demo model)",
    "predict_speed": "Predict seconds per image with the demo model, before / after the gain-1 fast path and equal-size batching",
    "fill_options": "PixelHacker's inference options on object removal (demo C2F model, held-out synthetic scenes, clean plates)",
    "large_photo": "A 3000 x 2000 photo: seconds and peak memory per strategy (full / resize / crop), demo C2F model and Telea, CPU",
    "stylegan2": "StyleGAN2 / HFGI forward time",
    "shard_loading": "Shard loading throughput vs raw decode",
    "train_throughput": "Training throughput and peak memory per module (fp32 / bf16, eager / torch.compile)",
    "gpu_check": "GPU validation run: full-size training (images/s, peak memory, MFU), three-stage 1024 inpainting, attention, generators, DDP",
}


def machine() -> dict[str, Any]:
    """CPU model, core count, torch version and GPU (or its absence) of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": gpu,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_scripts(names: list[str], extra: dict[str, str]) -> dict[str, Any]:
    """Run the named scripts one after another; returns their command, status and duration."""
    meta = json.loads(META.read_text()) if META.is_file() else {"runs": {}}
    for name in names:
        script = ROOT / SCRIPTS[name]
        cmd = [sys.executable, str(script), *shlex.split(extra.get(name, ""))]
        shown = " ".join(["python", SCRIPTS[name], *shlex.split(extra.get(name, ""))])
        if not script.is_file():
            print(f"[{name}] {SCRIPTS[name]} does not exist: skipped", flush=True)
            meta["runs"][name] = {"command": shown, "status": "script missing"}
            continue
        if name in GPU_ONLY and not _cuda_available():
            print(f"[{name}] no CUDA device: skipped (its earlier results, if any, are kept)", flush=True)
            continue
        print(f"[{name}] {shown}", flush=True)
        start = time.time()
        proc = subprocess.run(cmd, cwd=ROOT)
        meta["runs"][name] = {
            "command": shown,
            "status": "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})",
            "seconds": round(time.time() - start, 1),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
        }
        META.parent.mkdir(parents=True, exist_ok=True)
        META.write_text(json.dumps(meta, indent=2))
    return meta


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) if len(value) <= 6 else f"{len(value)} items"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of a list of dicts (columns in order of first appearance)."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def render_result(name: str, data: Any) -> str:
    """Settings of one JSON result as a bullet list, and each list of records in it as a table."""
    if not isinstance(data, dict):
        return f"```\n{json.dumps(data, indent=2)[:4000]}\n```"
    settings, tables = [], []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tables.append((key, [{"name": k, **v} for k, v in value.items()]))
        else:
            settings.append(f"- {key}: {_cell(value)}")
    out = ["\n".join(settings)] if settings else []
    for key, rows in tables:
        out.append(f"{key}:\n\n{table(rows)}")
    return "\n\n".join(out)


GPU_CHECK_COMMAND = "timeout 480 python benchmarks/gpu_check.py --budget-s 390"


def _status_note(record: dict[str, Any]) -> str:
    if record.get("status") == "failed":
        err = record.get("error", {})
        return f"failed: {err.get('type')}: {str(err.get('message', ''))[:160]}"
    if record.get("status") == "skipped":
        return f"skipped: {record.get('reason')}"
    return str(record.get("status"))


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def render_gpu_check(data: dict[str, Any]) -> str:
    """The GPU section of BENCHMARKS.md from ``gpu_check.json`` (figures as measured; ratios of measured figures)."""
    items: dict[str, dict[str, Any]] = data.get("items", {})
    counts = {s: sum(r.get("status") == s for r in items.values()) for s in ("ok", "failed", "skipped")}
    peak = data.get("peak_bf16_tflops")
    out = [
        f"GPU: {data.get('gpu')}; torch {data.get('torch')}, CUDA {data.get('cuda')}, cuDNN {data.get('cudnn')}; "
        f"run {data.get('date')}, {_cell(data.get('elapsed_s'))} s (budget {_cell(data.get('budget_s'))} s); "
        f"{counts['ok']} items ok, {counts['failed']} failed, {counts['skipped']} skipped.",
        f"Command: `{data.get('command')}`",
        f"MFU = counted FLOPs / measured time / {peak if peak else '?'} TFLOP/s (dense bf16 peak, {data.get('peak_source')}).",
    ]
    train = [(k, r) for k, r in items.items() if k.startswith("train/")]
    if train:
        rows = []
        for key, r in train:
            ok = r.get("status") == "ok"
            rows.append({
                "cell": key[len("train/"):], "config": r.get("config"), "batch": r.get("batch"),
                "images/s": r.get("images_per_s"), "ms/step": r.get("ms_per_step"),
                "peak memory GiB": r.get("peak_memory_gib"), "TFLOP/step": _scaled(r.get("flops_per_step"), 1e-12),
                "TFLOP/s": r.get("tflops_per_s"), "MFU %": _scaled(r.get("mfu"), 100), "status": "ok" if ok else _status_note(r),
            })
        out.append("Training, full-size configs through `python -m main fit` (median step after warm-up; FLOPs of one "
                   "step counted with FlopCounterMode, gradient-checkpointing recomputation included):\n\n" + table(rows))
    inp = items.get("inpaint/c2f_1024")
    if inp is not None:
        if inp.get("status") != "ok":
            out.append(f"Three-stage inpainting: {_status_note(inp)}")
        else:
            b1 = inp["batch1"]
            rows = [{"batch": 1, "CFG": mode, "s/image": b1[mode]["seconds_per_image"], "peak GiB above weights": b1[mode]["peak_memory_gib"],
                     "MFU %": _scaled(b1[mode]["mfu"], 100)} for mode in ("batched", "two_forward")]
            for mode, r in inp.get("at_max_batch", {}).items():
                rows.append({"batch": inp["max_batch"], "CFG": mode, "s/image": r.get("seconds_per_image"),
                             "peak GiB above weights": r.get("peak_memory_gib"), "MFU %": _scaled(r.get("mfu"), 100),
                             "note": None if "seconds" in r else r.get("reason") or r.get("status")})
            out.append(
                f"Three-stage C2F inpainting ({'/'.join(map(str, inp['stage_sizes']))} px, {'/'.join(map(str, inp['steps']))} DDIM "
                f"steps, {inp['dtype']}): **{_cell(inp['seconds_per_image_batch1'])} s per {inp['size']} px image** at batch 1 "
                f"(batched CFG); two forwards / batched CFG time: {_cell(inp['cfg_two_forward_over_batched_batch1'])} at batch 1"
                + (f", {_cell(inp['cfg_two_forward_over_batched_max_batch'])} at batch {inp['max_batch']}"
                   if "cfg_two_forward_over_batched_max_batch" in inp else "")
                + f". Largest batch: {inp['max_batch']} ({inp['max_batch_search']}). FLOPs per image "
                f"{_cell(_scaled(inp['flops_per_image'], 1e-12))} T ({inp['flops_method']}).\n\n" + table(rows)
            )
    att = items.get("attention")
    if att is not None:
        if att.get("status") != "ok":
            out.append(f"Attention: {_status_note(att)}")
        else:
            rows = []
            for ratio in att["ratios"]:
                by_kind = {r["kind"]: r for r in att["rows"] if r["pass"] == ratio["pass"] and r["side"] == ratio["side"]}

                def ms(kind: str) -> Any:
                    r = by_kind[kind]
                    return "OOM" if r["status"] == "OOM" else r["ms"]

                def mib(kind: str) -> Any:
                    r = by_kind[kind]
                    return "OOM" if r["status"] == "OOM" else r["peak_mib"]

                rows.append({"pass": ratio["pass"], "tokens": f"{ratio['side']}^2", "linear ms": ms("linear"),
                             "SDPA ms": ms("softmax_sdpa"), "softmax matrix ms": ms("softmax_matmul"),
                             "SDPA / linear": ratio["sdpa_over_linear"], "linear MiB": mib("linear"),
                             "SDPA MiB": mib("softmax_sdpa"), "softmax matrix MiB": mib("softmax_matmul")})
            out.append(f"One GatedLinearAttention layer ({att['channels']} channels, {att['heads']} heads, batch {att['batch']}, "
                       f"{att['dtype']}; MiB: peak above what the call started with):\n\n" + table(rows))
    gens = []
    sg = items.get("generators/stylegan2_hfgi")
    if sg is not None:
        if sg.get("status") == "ok":
            gens += [{"network": f"StyleGAN2 {sg['size']} (no fusion)", "ms/image": sg["stylegan2_ms"]},
                     {"network": f"StyleGAN2 {sg['size']} + HFGI fusion (layer {sg['fusion_layer']})", "ms/image": sg["stylegan2_fused_ms"],
                      "peak MiB above weights": sg["stylegan2_fused_peak_mib"]},
                     {"network": "HFGI reconstruction (e4e + G + ADA + E_c + fused G)", "ms/image": sg["hfgi_reconstruct_ms"],
                      "peak MiB above weights": sg["hfgi_reconstruct_peak_mib"]}]
        else:
            gens.append({"network": "StyleGAN2 / HFGI", "status": _status_note(sg)})
    lama = items.get("generators/big_lama")
    if lama is not None:
        if lama.get("status") == "ok":
            gens += [{"network": f"big-lama {r['size']} px", "ms/image": r["ms"], "peak MiB above weights": r["peak_mib"]} for r in lama["rows"]]
        else:
            gens.append({"network": "big-lama", "status": _status_note(lama)})
    if gens:
        out.append("Generators (fp32, batch 1, random weights of the official architectures):\n\n" + table(gens))
    ddp = items.get("ddp")
    if ddp is not None:
        if ddp.get("status") == "ok":
            out.append(f"DDP: `python -m main fit` with `--trainer.strategy=ddp` on one GPU ({ddp['config']}): ok, backend "
                       f"{ddp['backend']}, {ddp['steps']} steps, {_cell(ddp['wall_s'])} s wall.")
        else:
            out.append(f"DDP: {_status_note(ddp)}")
    failed = [(k, r) for k, r in items.items() if r.get("status") == "failed"]
    if failed:
        out.append("Failures (tracebacks in the JSON):\n\n" + "\n".join(
            f"- `{k}`: {r['error']['type']}: {str(r['error']['message'])[:300]}" for k, r in failed))
    return "\n\n".join(out)


def gpu_section(path: Path) -> str:
    """The body of the gpu_check section: the rendered results, or a note that no GPU run exists yet."""
    how = (f"On a GPU machine run `{GPU_CHECK_COMMAND}`, then `python benchmarks/run_all.py --report-only` "
           "(see the docstring of `benchmarks/gpu_check.py`).")
    if not path.is_file():
        return f"No GPU run has been made yet (`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` does not exist). {how}"
    data = json.loads(path.read_text())
    if data.get("dry_run") or not data.get("gpu"):
        return f"`{path.name}` holds a CPU dry run, not GPU figures: no GPU run has been made yet. {how}"
    return render_gpu_check(data)


def write_markdown(path: Path) -> Path:
    """BENCHMARKS.md from ``benchmarks/results/*.json`` and the run metadata."""
    meta = json.loads(META.read_text()) if META.is_file() else {"runs": {}}
    here = machine()
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/run_all.py` from the JSON files in `benchmarks/results/` "
        "(do not edit by hand; re-run the command). Each section names the command that produced it "
        "and the machine it ran on.",
        "",
    ]
    gpus = {r.get("machine", {}).get("gpu") for name, r in meta["runs"].items() if isinstance(r, dict) and name not in GPU_ONLY}
    gpu_json = RESULTS / "gpu_check.json"
    gpu_run = json.loads(gpu_json.read_text()) if gpu_json.is_file() else None
    if gpu_run is not None and (gpu_run.get("dry_run") or not gpu_run.get("gpu")):
        gpu_run = None
    if not any(gpus):
        if gpu_run:
            lead = (f"**GPU figures are only in the gpu_check section** ({gpu_run['gpu']}, {gpu_run['date']}); every other "
                    "figure below comes from a CPU machine")
        else:
            lead = "**No GPU was available during this work**: every figure below comes from a CPU machine"
        lines += [
            f"{lead} (tiny / small sizes). The scripts take `--device cuda` and larger sizes on a GPU machine; "
            f"run `python benchmarks/run_all.py` there to add GPU figures (`{GPU_CHECK_COMMAND}` is the prepared GPU run"
            f"{'' if gpu_run else '; no GPU run has been made yet'}).",
            "",
        ]
    loads = [r["machine"]["load_average_1m"] for r in meta["runs"].values() if isinstance(r, dict) and "machine" in r]
    if loads and here["cores"] and max(loads) > here["cores"]:
        lines += [
            f"Note: the CPU figures were measured on a shared {here['cores']}-core development machine while other "
            f"jobs ran (1-minute load average up to {max(loads):.1f} when a script finished), so absolute "
            "times are pessimistic and noisy; ratios within one table are more meaningful than absolute values.",
            "",
        ]
    for name in SCRIPTS:
        result = RESULTS / f"{name}.json"
        run = meta["runs"].get(name, {})
        lines += [f"## {name}: {DESCRIPTIONS[name]}", ""]
        if name == "gpu_check":
            lines += [gpu_section(result), ""]
            continue
        if not result.is_file():
            status = run.get("status", "not run")
            lines += [f"No results (`{SCRIPTS[name]}`: {status}).", ""]
            continue
        m = run.get("machine")
        if "command" in run:
            lines.append(f"Command: `{run['command']}`")
        else:
            lines.append(
                f"Command: `python {SCRIPTS[name]}` run by its owner outside run_all.py (exact arguments not "
                "recorded; the settings the script saved are listed below)."
            )
        if m:
            gpu = m["gpu"] or "no GPU"
            lines.append(
                f"Machine: {m['cpu']}, {m['cores']} cores, {gpu}; torch {m['torch']}, Python {m['python']}; "
                f"finished {run.get('finished', '?')} after {run.get('seconds', '?')} s; "
                f"1-minute load average at the end {m['load_average_1m']}."
            )
        else:
            lines.append(
                f"Machine: the same development machine ({here['cpu']}, {here['cores']} cores, "
                f"{here['gpu'] or 'no GPU'}, torch {here['torch']}) unless the settings below say otherwise."
            )
        lines += ["", render_result(name, json.loads(result.read_text())), ""]
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS), help="scripts to run")
    p.add_argument("--args", nargs="*", default=[], metavar="NAME=ARGS",
                   help='extra arguments per script, e.g. attention="--sides 32 64"')
    p.add_argument("--report-only", action="store_true", help="do not run anything, only write BENCHMARKS.md")
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = p.parse_args(argv)
    extra = {}
    for item in args.args:
        name, sep, value = item.partition("=")
        if not sep or name not in SCRIPTS:
            p.error(f"--args takes NAME=ARGS with NAME one of {list(SCRIPTS)}, got {item!r}")
        extra[name] = value
    if not args.report_only:
        run_scripts(args.only, extra)
    print(f"wrote {write_markdown(Path(args.out))}")


if __name__ == "__main__":
    main()
