"""Run every benchmark script and write BENCHMARKS.md from the JSON files in benchmarks/results/.

Scripts (each prints a table and saves ``benchmarks/results/<name>.json``):

| name | script | measures |
|---|---|---|
| attention | ``benchmarks/attention.py`` | linear vs softmax self-attention over token counts |
| c2f_sampling | ``benchmarks/c2f_sampling.py`` | three-stage C2F sampling latency per image, batched CFG vs two forwards |
| stylegan2 | ``benchmarks/stylegan2.py`` | StyleGAN2 / HFGI forward time |
| shard_loading | ``benchmarks/shard_loading.py`` | WebDataset shard loading vs raw image decoding |
| train_throughput | ``benchmarks/train_throughput.py`` | training images/s and peak memory per module, fp32 / bf16, eager / compile |

    python benchmarks/run_all.py                          # run them all, then write BENCHMARKS.md
    python benchmarks/run_all.py --only attention --args attention="--sides 32 64"
    python benchmarks/run_all.py --report-only            # only re-render BENCHMARKS.md from the JSON files

The commands that produced each JSON file and the machine they ran on are kept in
``benchmarks/results/run_all.json`` and repeated in BENCHMARKS.md. Figures are never typed by hand:
BENCHMARKS.md is generated from the JSON files.
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
    "stylegan2": "benchmarks/stylegan2.py",
    "shard_loading": "benchmarks/shard_loading.py",
    "train_throughput": "benchmarks/train_throughput.py",
}
DESCRIPTIONS = {
    "attention": "Self-attention layer: linear vs softmax over token counts",
    "c2f_sampling": "Three-stage C2F sampling latency per image (batched CFG vs two forwards)",
    "stylegan2": "StyleGAN2 / HFGI forward time",
    "shard_loading": "Shard loading throughput vs raw decode",
    "train_throughput": "Training throughput and peak memory per module (fp32 / bf16, eager / torch.compile)",
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
    gpus = {r.get("machine", {}).get("gpu") for r in meta["runs"].values() if isinstance(r, dict)}
    if not any(gpus):
        lines += [
            "**No GPU was available during this work**: every figure below comes from a CPU machine "
            "(tiny / small sizes). The scripts take `--device cuda` and larger sizes on a GPU machine; "
            "run `python benchmarks/run_all.py` there to add GPU figures.",
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
