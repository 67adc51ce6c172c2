"""Exact resumption: the training stream's position is checkpoint state, the model's per-step randomness a function
of the position, so a run killed with ``kill -9`` and resumed with ``--ckpt_path last`` ends bit-identical to an
uninterrupted one (real ``python -m main fit`` processes, one with DataLoader workers, one with two gloo DDP ranks).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datamodules import ShardDataModule
from datamodules.train_stream import StreamPosition
from ops_runs import REPO, logged, main_env, read_metrics, run_main


def _dm(shards, **kwargs) -> ShardDataModule:
    args = dict(train_shards=shards.train, resolution=32, batch_size=3, num_workers=0, samples_per_epoch=30, seed=5)
    args.update(kwargs)
    return ShardDataModule(**args)


def _fingerprint(batch) -> tuple:
    return tuple(batch["key"]), float(batch["image"].double().sum()), float(batch["mask"].double().sum()), tuple(batch["mask_type"].tolist())


def test_batch_t_is_a_pure_function_of_the_position(synthetic_shards):
    """Batch t of epoch e is the same read from the start, resumed at t, or made by 2 workers; epochs differ."""
    dm = _dm(synthetic_shards)
    dm.setup("fit")
    loader = dm.train_dataloader()
    epoch0 = [_fingerprint(b) for b in loader]
    epoch1 = [_fingerprint(b) for b in loader]
    assert len(epoch0) == len(epoch1) == 10 and epoch0 != epoch1
    for workers in (0, 2):
        resumed = _dm(synthetic_shards, num_workers=workers)
        resumed.setup("fit")
        resumed_loader = resumed.train_dataloader()
        resumed_loader.resume_at(StreamPosition(epoch=0, batch=7))
        assert [_fingerprint(b) for b in resumed_loader] == epoch0[7:]
        assert resumed.sample_counts("train")["used"] == 9  # the 7 batches before were neither read nor decoded
        assert [_fingerprint(b) for b in resumed_loader] == epoch1  # the next pass is the next epoch, from batch 0
    # one pass over the data per 24 samples: the first 24 samples of epoch 0 are 24 different samples
    assert len({k for b in epoch0[:8] for k in b[0]}) == 24


def test_ranks_read_disjoint_samples_within_an_epoch(synthetic_shards, monkeypatch):
    keys = []
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        dm = _dm(synthetic_shards, samples_per_epoch=12)
        dm.setup("fit")
        keys.append([k for b in dm.train_dataloader() for k in b["key"]])
    assert len(keys[0]) == len(keys[1]) == 12 and not set(keys[0]) & set(keys[1])


# ----------------------------------------------------------------------------------------- real processes
STEPS, EVERY = 12, 4


def _fit_args(shards, save_dir: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", "configs/c2f/tiny.yaml",
        "--data.init_args.synthetic_dir=null",
        f"--data.init_args.train_shards={shards.train}",
        f"--data.init_args.val_shards={shards.val}",
        f"--data.init_args.class_list={shards.class_list}",
        "--data.init_args.batch_size=2", "--data.init_args.val_batch_size=2", "--data.init_args.samples_per_epoch=14",
        f"--trainer.max_steps={STEPS}", "--trainer.val_check_interval=6", "--trainer.limit_val_batches=1",
        "--trainer.log_every_n_steps=1", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={save_dir}", "--trainer.logger.init_args.name=run",
        "--trainer.logger.init_args.version=0",
        f"--last_checkpoint.every_n_train_steps={EVERY}",
        "--trainer.callbacks+=callbacks.sample_audit.SampleAudit",
        *extra,
    ]


def _kill_after_first_save(args: list[str], run_dir: Path, timeout: float = 240) -> int:
    """Start ``python -m main`` and ``kill -9`` it as soon as a periodic last.ckpt exists; the step it holds."""
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "main", *args], cwd=REPO, env=main_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: DDP ranks and DataLoader workers too
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way (exit {proc.returncode}):\n{err[-3000:]}"
    step = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    assert 0 < step < STEPS
    return step


def _states(path: Path, root: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint: weights, optimizer state, callback states, flattened by path (``root``, the
    run's own folder, cut out of the names: best-k trackers key their files by path)."""
    out: dict[str, torch.Tensor] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{str(k).replace(str(root), '<root>')}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    walk("", {k: ckpt[k] for k in ("state_dict", "optimizer_states", "callbacks") if k in ckpt})
    return out


def _max_difference(a: Path, b: Path, root_a: Path, root_b: Path) -> float:
    sa, sb = _states(a, root_a), _states(b, root_b)
    assert sa.keys() == sb.keys() and len(sa) > 10
    return max(float((x.double() - sb[k].double()).abs().max()) if x.numel() else 0.0 for k, x in sa.items())


def _train_keys(run_dir: Path, rank: int = 0) -> list[list[str]]:
    return json.loads((run_dir / "sample_audit" / f"rank{rank}.json").read_text())["train"]


@pytest.mark.slow
def test_kill_9_and_resume_in_one_process_ends_bit_identical(synthetic_shards, tmp_path):
    """The tiny configs' setting (one process, no workers): every checkpoint tensor, metrics and keys."""
    run_main(_fit_args(synthetic_shards, tmp_path / "straight"), cwd=REPO, timeout=300)
    straight = tmp_path / "straight" / "run" / "version_0"
    resumed = tmp_path / "resumed" / "run" / "version_0"
    saved = _kill_after_first_save(_fit_args(synthetic_shards, tmp_path / "resumed"), resumed)
    run_main([*_fit_args(synthetic_shards, tmp_path / "resumed"), "--ckpt_path=last"], cwd=REPO, timeout=300)
    difference = _max_difference(straight / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt", straight, resumed)
    print(f"one process: max abs difference of every checkpoint tensor after kill -9 at step {saved} + resume: {difference}")
    assert difference == 0.0
    assert _train_keys(resumed) == _train_keys(straight)[saved:]
    want = {s: v for s, v in logged(read_metrics(straight), "train/loss") if s >= saved}
    got = {s: v for s, v in logged(read_metrics(resumed), "train/loss") if s >= saved}
    assert got == want and len(want) == STEPS - saved


@pytest.mark.slow
def test_kill_9_and_resume_under_two_ddp_ranks_with_two_workers_ends_bit_identical(synthetic_shards, tmp_path):
    """2 gloo ranks x 2 DataLoader workers: every checkpoint tensor (weights, optimizer, callback states), the logged
    train metrics and each rank's sample keys after kill -9 + ``--ckpt_path last`` equal the uninterrupted run's."""
    extra = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu", "--data.init_args.num_workers=2"]
    run_main(_fit_args(synthetic_shards, tmp_path / "straight", *extra), cwd=REPO, timeout=300)
    straight = tmp_path / "straight" / "run" / "version_0"
    resumed = tmp_path / "resumed" / "run" / "version_0"
    saved = _kill_after_first_save(_fit_args(synthetic_shards, tmp_path / "resumed", *extra), resumed)
    run_main([*_fit_args(synthetic_shards, tmp_path / "resumed", *extra), "--ckpt_path=last"], cwd=REPO, timeout=300)

    difference = _max_difference(straight / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt", straight, resumed)
    print(f"max abs difference of every checkpoint tensor after kill -9 at step {saved} + resume: {difference}")
    assert difference == 0.0
    ckpt = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["ShardDataModule"]["train_stream"]["batches_done"] == STEPS % 7  # 7 batches per epoch and rank
    for rank in (0, 1):  # each rank's batches after the resume are its uninterrupted batches from the saved step on
        assert _train_keys(resumed, rank) == _train_keys(straight, rank)[saved:], f"rank {rank}"
    # ranks read disjoint samples (the first 5 batches of each: 20 of the 24 samples, one pass over the data)
    assert not {k for b in _train_keys(straight, 0)[:5] for k in b} & {k for b in _train_keys(straight, 1)[:5] for k in b}
    want = {s: v for s, v in logged(read_metrics(straight), "train/loss") if s >= saved}
    got = {s: v for s, v in logged(read_metrics(resumed), "train/loss") if s >= saved}
    assert got == want and len(want) == STEPS - saved
