"""A multi-day run can be trusted: the newest state is never lost, rolled back or overwritten with garbage.

Real ``python -m main fit`` runs (in-process or as real processes), real files, a real ``kill -9``.
"""
from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from main import cli_main
from networks.checkpoints import CheckpointError, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LCG = "configs/lcg/tiny.yaml"


def _lcg_args(tmp_path: Path, shards, *extra: str, steps: int = 6, name: str = "run") -> list[str]:
    return [
        "--config", LCG, f"--data.init_args.train_shards={shards.train}", f"--data.init_args.val_shards={shards.val}",
        "--data.init_args.synthetic_dir=null", f"--trainer.max_steps={steps}", "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1", f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--trainer.logger.init_args.name={name}", "--model.init_args.sample_steps=2", *extra,
    ]


def _step_of(path: Path) -> int:
    return int(read_checkpoint(path)["global_step"])


def test_last_checkpoint_tracks_the_newest_step_when_val_loss_stops_improving(tmp_path, synthetic_shards):
    """lr=0: val/loss never improves after the first validation; last.ckpt must still reach step 6."""
    cli_main(["fit", *_lcg_args(tmp_path, synthetic_shards, "--model.init_args.optimizer.init_args.lr=0")])
    ckpts = tmp_path / "run" / "version_0" / "checkpoints"
    assert _step_of(ckpts / "last.ckpt") == 6
    best = list(ckpts.glob("best-*.ckpt"))
    assert len(best) == 1 and _step_of(best[0]) == 2  # the best is kept separately


def test_periodic_last_checkpoint_without_validation(tmp_path, synthetic_shards):
    cli_main(["fit", *_lcg_args(tmp_path, synthetic_shards, "--trainer.limit_val_batches=0", "--last_checkpoint.every_n_train_steps=2",
                                steps=5)])
    assert _step_of(tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt") == 5


def test_non_finite_loss_stops_with_the_step_and_terms_and_keeps_last_finite(tmp_path, synthetic_shards):
    proc = subprocess.run(
        [sys.executable, "-m", "main", "fit", *_lcg_args(tmp_path, synthetic_shards, "--model.init_args.optimizer.init_args.lr=1e10",
                                                         steps=30)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "training stopped at step" in proc.stderr and "non-finite terms: noise=" in proc.stderr
    last = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    if last.exists():  # a validation before the blow-up saved it: it must hold finite weights
        state = read_checkpoint(last)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_rerun_into_the_same_run_directory_keeps_earlier_metrics(tmp_path, synthetic_shards):
    args = _lcg_args(tmp_path, synthetic_shards, "--trainer.logger.init_args.version=fixed", steps=2)
    cli_main(["fit", *args])
    run_dir = tmp_path / "run" / "fixed"
    first = (run_dir / "metrics.csv").read_text()
    cli_main(["fit", *args])
    assert (run_dir / "metrics.attempt-0.csv").read_text() == first
    assert (run_dir / "metrics.csv").is_file()


def test_ckpt_path_last_in_a_new_run_directory_names_the_folder_and_stops(tmp_path, synthetic_shards):
    with pytest.raises(CheckpointError, match=r"--ckpt_path last: searched .*version_0/checkpoints .*a new run.*nothing was started"):
        cli_main(["fit", *_lcg_args(tmp_path, synthetic_shards), "--ckpt_path=last"])
    cli_main(["fit", *_lcg_args(tmp_path, synthetic_shards, steps=2)])
    # the earlier run is listed; naming its version resumes it
    with pytest.raises(CheckpointError, match=r"Earlier runs with one: .*version_0"):
        cli_main(["fit", *_lcg_args(tmp_path, synthetic_shards), "--ckpt_path=last"])
    cli_main(["fit", *_lcg_args(tmp_path, synthetic_shards, "--trainer.logger.init_args.version=0", steps=4), "--ckpt_path=last"])
    assert _step_of(tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt") == 4


def test_ckpt_path_of_another_module_is_refused_and_explicit_options_win(tmp_path, synthetic_shards):
    trained = tmp_path / "trained"
    cli_main(["fit", *_lcg_args(trained, synthetic_shards, "--model.init_args.guidance_scale=3.5", steps=2)])
    ckpt = trained / "run" / "version_0" / "checkpoints" / "last.ckpt"
    c2f = ["--config", "configs/c2f/tiny.yaml", f"--data.init_args.train_shards={synthetic_shards.train}",
           f"--data.init_args.val_shards={synthetic_shards.val}", "--data.init_args.synthetic_dir=null",
           f"--trainer.logger.init_args.save_dir={tmp_path}"]
    with pytest.raises(CheckpointError, match=r"written by lightning_modules.lcg_pretrain.LCGPretrainModule, but this command builds"):
        cli_main(["validate", *c2f, f"--ckpt_path={ckpt}"])
    # the checkpoint's hyper-parameters rebuild the model (Lightning silently replaced explicit options too):
    # the config's guidance_scale 2.0 gives way to the checkpoint's 3.5, the explicit sample_steps=3 is kept
    with pytest.warns(UserWarning, match=r"(?s)from the checkpoint.*guidance_scale: config 2.0 -> checkpoint 3.5.*kept from your command line: sample_steps"):
        cli = cli_main(["validate", *_lcg_args(tmp_path, synthetic_shards, "--model.init_args.sample_steps=3", name="v"),
                        f"--ckpt_path={ckpt}"])
    assert cli.model.guidance_scale == 3.5 and cli.model.sample_steps == 3


def test_damaged_ckpt_path_files_are_named(tmp_path, synthetic_shards):
    empty = tmp_path / "last.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"last.ckpt is empty \(0 bytes\)"):
        cli_main(["fit", *_lcg_args(tmp_path, synthetic_shards), f"--ckpt_path={empty}"])
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "main", "validate", *_lcg_args(tmp_path, synthetic_shards), f"--ckpt_path={notes}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "notes.txt: cannot read" in proc.stderr and "Traceback" not in proc.stderr
    assert "weights_only=False" not in proc.stderr


_SAVER = r"""
import sys, torch
from callbacks.checkpoint_io import SafeCheckpointIO
io, path = SafeCheckpointIO(), sys.argv[1]
state = {"big": torch.randn(12_000_000)}  # ~48 MB: the copy across filesystems takes a while
step = 0
while True:
    step += 1
    state["step"] = step
    print("saving", step, flush=True)
    io.save_checkpoint(state, path)
"""


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a tmpfs at /dev/shm for TMPDIR")
def test_kill_9_while_saving_never_leaves_a_partial_checkpoint(tmp_path):
    """TMPDIR on tmpfs, the checkpoint on disk: Lightning's default I/O moved a temp file across filesystems (a copy),
    so a kill during it left a 0-byte / truncated last.ckpt. Kill real saving processes at random moments."""
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("tmp_path is on the same filesystem as /dev/shm")
    target = tmp_path / "checkpoints" / "last.ckpt"
    rng = random.Random(0)
    steps = []
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "TMPDIR": "/dev/shm", "PYTHONPATH": str(ROOT)})
        for _ in range(3):  # two complete saves happened; the third is under way
            proc.stdout.readline()
        time.sleep(rng.uniform(0.02, 0.25))  # kill inside the save (with Lightning's default I/O: 4 of 6 corrupt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert target.stat().st_size > 0
        steps.append(int(read_checkpoint(target)["step"]))  # loads: complete, not truncated
    assert all(s >= 1 for s in steps)
    assert not [p for p in target.parent.iterdir() if p.name != "last.ckpt" and not p.name.startswith(".last.ckpt.tmp")]
