"""benchmarks/gpu_check.py, the prepared GPU validation run, kept working on CPU through its dry run.

The dry run goes through every item's code path (real ``python -m main fit`` runs with the tiny
configs, FLOP counting, sampling, the DDP subprocess); the full-size argument lists that only a
GPU run executes are checked against the CLI parser, and the BENCHMARKS.md section is rendered
from the dry run's JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(REPO))

from benchmarks import gpu_check, run_all  # noqa: E402

DRY_ITEMS = [
    "train/lcg/bf16/eager", "train/c2f_s0/bf16/eager", "train/c2f_s1/bf16/eager", "train/c2f_s2/bf16/eager",
    "train/hfgi/fp32/eager", "inpaint/c2f_1024", "attention", "generators/stylegan2_hfgi", "generators/big_lama", "ddp",
    "train/lcg/fp32/eager", "train/hfgi/bf16/eager",  # the compile cells run on a GPU only
]
PEAK = 0.5  # TFLOP/s given on the command line, so the dry run computes MFU too


def run_check(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One full dry run: its JSON, exit status and output."""
    out = tmp_path_factory.mktemp("gpu_check") / "dry.json"
    result = gpu_check.RESULT
    before = result.stat().st_mtime_ns if result.exists() else None
    proc = run_check(["--dry-run", "--out", str(out), "--peak-tflops", str(PEAK)])
    after = result.stat().st_mtime_ns if result.exists() else None
    assert out.is_file(), f"no JSON written:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"data": json.loads(out.read_text()), "proc": proc, "result_untouched": before == after, "path": out}


@pytest.mark.slow
def test_dry_run_every_item_ok(dry_run):
    data, proc = dry_run["data"], dry_run["proc"]
    failed = {k: r.get("error") or r.get("reason") for k, r in data["items"].items() if r["status"] != "ok"}
    assert not failed, f"items not ok: {json.dumps(failed, indent=1)[:4000]}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(data["items"]) == DRY_ITEMS
    assert dry_run["result_untouched"], "a dry run must never write benchmarks/results/gpu_check.json"
    # header
    assert data["benchmark"] == "gpu_check" and data["dry_run"] is True and data["gpu"] is None
    assert data["peak_bf16_tflops"] == PEAK and data["peak_source"] == "--peak-tflops"
    assert data["torch"] and data["date"] and data["machine"]["cores"] and "--dry-run" in data["command"]
    # the readable summary lists every item
    summary = proc.stdout[proc.stdout.index("Summary"):]
    assert all(item in summary for item in DRY_ITEMS)


@pytest.mark.slow
def test_dry_run_training_figures(dry_run):
    items = dry_run["data"]["items"]
    for item_id in [i for i in DRY_ITEMS if i.startswith("train/")]:
        r = items[item_id]
        assert r["kind"] == "train" and r["timed_steps"] == 1 and r["warmup_steps"] == 1
        assert r["batch"] == (1 if "hfgi" in item_id else 2)
        assert r["images_per_s"] == pytest.approx(r["batch"] / (r["ms_per_step"] / 1000))
        assert r["flops_per_step"] > 1e6, f"{item_id}: FLOPs of the training step were not counted"
        assert r["mfu"] == pytest.approx(r["flops_per_step"] / (r["ms_per_step"] / 1000) / (PEAK * 1e12))
        assert r["peak_memory_gib"] is None  # CPU
        assert r["precision"] == ("32-true" if "fp32" in item_id else "bf16-mixed")
    # one training step of the stage-2 U-Net (64 px) costs more than one of stage 0 (16 px)
    assert items["train/c2f_s2/bf16/eager"]["flops_per_step"] > 4 * items["train/c2f_s0/bf16/eager"]["flops_per_step"]
    # the same step counts the same FLOPs in fp32 and bf16
    assert items["train/lcg/fp32/eager"]["flops_per_step"] == items["train/lcg/bf16/eager"]["flops_per_step"]


@pytest.mark.slow
def test_dry_run_other_items(dry_run):
    items = dry_run["data"]["items"]
    inp = items["inpaint/c2f_1024"]
    # the FLOPs scaled from 2 counted steps per stage equal a direct count of the whole run
    assert inp["steps"] == gpu_check.DRY_SAMPLING_STEPS
    assert inp["flops_per_image"] == inp["flops_detail"]["flops_direct"] > 0
    b1 = inp["batch1"]
    assert inp["cfg_two_forward_over_batched_batch1"] == pytest.approx(b1["two_forward"]["seconds"] / b1["batched"]["seconds"])
    assert inp["max_batch"] == 2 and set(inp["at_max_batch"]) == {"batched", "two_forward"}
    assert inp["at_max_batch"]["batched"]["seconds_per_image"] == pytest.approx(inp["at_max_batch"]["batched"]["seconds"] / 2)

    att = items["attention"]
    assert {(r["pass"], r["kind"]) for r in att["rows"]} == {
        (p, k) for p in ("forward", "forward+backward") for k in ("linear", "softmax_sdpa", "softmax_matmul")}
    assert all(r["status"] == "ok" and r["ms"] > 0 for r in att["rows"])
    assert len(att["ratios"]) == 2 and all(r["sdpa_over_linear"] > 0 for r in att["ratios"])

    sg = items["generators/stylegan2_hfgi"]
    assert sg["size"] == 64 and sg["fusion_layer"] == 7 and sg["stylegan2_fused_ms"] > 0 and sg["hfgi_reconstruct_ms"] > 0
    assert [r["size"] for r in items["generators/big_lama"]["rows"]] == [32, 64]

    ddp = items["ddp"]
    assert ddp["backend"] == "gloo" and ddp["world_size"] == 1 and ddp["steps"] == gpu_check.DDP_STEPS


@pytest.mark.slow
def test_benchmarks_md_gpu_section_is_rendered_from_the_json(dry_run, tmp_path):
    data = dict(dry_run["data"])
    # as the dry run wrote it: never shown as GPU figures
    assert "holds a CPU dry run" in run_all.gpu_section(dry_run["path"])
    data.update(dry_run=False, gpu="NVIDIA H200 (rendering test)")
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(data))
    text = run_all.gpu_section(path)
    lcg = data["items"]["train/lcg/bf16/eager"]
    assert "NVIDIA H200 (rendering test)" in text
    assert f"| lcg/bf16/eager | configs/lcg/tiny.yaml | 2 | {run_all._cell(lcg['images_per_s'])} |" in text
    assert run_all._cell(100 * lcg["mfu"]) in text
    inp = data["items"]["inpaint/c2f_1024"]
    assert f"**{run_all._cell(inp['seconds_per_image_batch1'])} s per 64 px image**" in text
    assert run_all._cell(data["items"]["attention"]["ratios"][0]["sdpa_over_linear"]) in text
    assert "backend gloo" in text
    assert "No GPU run has been made yet" in run_all.gpu_section(tmp_path / "missing.json")


@pytest.mark.slow
def test_a_failing_item_is_recorded_and_the_others_still_run(tmp_path):
    """--only picks items; --isolate runs them in subprocesses; a bad size fails only its own item."""
    out = tmp_path / "partial.json"
    proc = run_check(["--dry-run", "--out", str(out), "--only", "attention", "inpaint", "--inpaint-size", "50", "--isolate"])
    assert proc.returncode == 1, "a failed item must make the exit status 1"
    items = json.loads(out.read_text())["items"]
    assert items["attention"]["status"] == "ok" and items["attention"]["rows"]
    err = items["inpaint/c2f_1024"]["error"]
    assert items["inpaint/c2f_1024"]["status"] == "failed"
    assert err["type"] == "ValueError" and "50x50 is not a multiple of 8" in err["message"]
    assert "check_size" in err["traceback"]
    skipped = {k: r["reason"] for k, r in items.items() if r["status"] == "skipped"}
    assert set(skipped) == set(DRY_ITEMS) - {"attention", "inpaint/c2f_1024"}
    assert all(reason == "not selected by --only" for reason in skipped.values())
    # --merge keeps the earlier run's other items when a subset is rerun
    proc = run_check(["--dry-run", "--out", str(out), "--only", "ddp", "--budget-s", "0", "--merge"], timeout=120)
    merged = json.loads(out.read_text())["items"]
    assert merged["attention"] == items["attention"] and merged["inpaint/c2f_1024"] == items["inpaint/c2f_1024"]
    assert merged["ddp"]["status"] == "skipped" and "budget" in merged["ddp"]["reason"]


def test_budget_stops_starting_items(tmp_path):
    out = tmp_path / "budget.json"
    proc = run_check(["--dry-run", "--out", str(out), "--budget-s", "0"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    items = json.loads(out.read_text())["items"]
    assert list(items) == DRY_ITEMS
    assert all(r["status"] == "skipped" and "budget of 0 s used up" in r["reason"] for r in items.values()), items


def test_bad_arguments_are_refused(tmp_path):
    proc = run_check(["--dry-run", "--out", str(gpu_check.RESULT)], timeout=120)
    assert proc.returncode == 2 and "never writes benchmarks/results/gpu_check.json" in proc.stderr
    proc = run_check(["--dry-run", "--out", str(tmp_path / "x.json"), "--only", "train/lcg/bf16/compile"], timeout=120)
    assert proc.returncode == 2 and "matches no item" in proc.stderr and "train/lcg/bf16/eager" in proc.stderr


def test_full_size_argument_lists_parse(tmp_path):
    """What only a GPU run executes: every full-size cell's and the DDP run's arguments pass the CLI parser."""
    from main import parse_config

    ctx = gpu_check.Context(dry_run=False, device="cuda", work=tmp_path, start=time.monotonic(), budget_s=390,
                            peak_tflops=None, isolate=True, warmup=3, steps=6, max_batch=16, inpaint_size=None,
                            attention_sides=[64], repeats=5)
    expected_batch = {"lcg": 32, "c2f_s0": 4, "c2f_s1": 4, "c2f_s2": 4, "hfgi": 8}
    cells = gpu_check.BASE_CELLS + gpu_check.EXTRA_CELLS
    assert {c.id for c in cells} >= {"train/lcg/fp32/eager", "train/lcg/bf16/compile", "train/c2f_s2/bf16/compile"}
    for cell in cells:
        cfg = parse_config(["fit", *gpu_check.train_args(ctx, cell, tmp_path / "probe.json")]).fit
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == cell.precision
        assert cfg.trainer.max_steps == 9 and cfg.trainer.limit_val_batches == 0
        assert cfg.data.init_args.batch_size == expected_batch[cell.name]
        assert cfg.data.init_args.train_shards is None and str(tmp_path) in cfg.data.init_args.synthetic_dir
        callbacks = [c.class_path for c in cfg.trainer.callbacks]
        assert callbacks[-1] == "benchmarks.step_probe.StepProbe"
        assert ("benchmarks.train_throughput.CompileCalledModules" in callbacks) == (cell.mode == "compile")
        model = cfg.model.init_args
        if cell.name.startswith("c2f"):
            assert model.train_stages == [int(cell.name[-1])] and model.lcg_checkpoint is None
            assert cfg.data.init_args.resolution == 1024
        if cell.name == "hfgi":
            assert model.size == 1024 and model.e4e_checkpoint is None and model.stylegan2_checkpoint is None
            assert model.directions is None and model.lpips_pretrained_backbone is False
            assert model.arcface_checkpoint == str(gpu_check.arcface_path(ctx))
    cfg = parse_config(["fit", *gpu_check.ddp_args(ctx, tmp_path / "probe.json")]).fit
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu" and str(cfg.trainer.devices) == "1"


def test_peak_table_matches_gpu_names():
    peak = gpu_check.peak_bf16_tflops
    assert peak("NVIDIA H200") == 989.5
    assert peak("NVIDIA H200 NVL") == 835.5
    assert peak("NVIDIA GH200 480GB") == 989.5
    assert peak("NVIDIA H100 80GB HBM3") == 989.5
    assert peak("NVIDIA H100 PCIe") == 756.5
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak("NVIDIA L40S") == 362.05 and peak("NVIDIA L40") == 181.05 and peak("NVIDIA L4") == 121.0
    assert peak("Tesla T4") is None and peak(None) is None
