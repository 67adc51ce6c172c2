"""The best-k tracker survives a resume, and ``--ckpt_path best`` picks by score, not by file time.

Real in-process ``fit`` / ``validate`` runs on the tiny LCG config and the session's synthetic shards.
"""
from __future__ import annotations

import os
from pathlib import Path

from cli.checkpoint_args import resolve_ckpt_path
from main import cli_main, parse_config
from networks.checkpoints import read_checkpoint
from ops_runs import logged, read_metrics


def _args(tmp_path: Path, shards, steps: int, *extra: str) -> list[str]:
    return [
        "--config", "configs/lcg/tiny.yaml", f"--data.init_args.train_shards={shards.train}",
        f"--data.init_args.val_shards={shards.val}", "--data.init_args.synthetic_dir=null", f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
        f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.logger.init_args.name=best",
        "--trainer.logger.init_args.version=0", "--model.init_args.sample_steps=2", "--trainer.callbacks=[]", *extra,
    ]


def _tracker(ckpt: dict) -> dict:
    states = [s for k, s in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert len(states) == 1, list(ckpt["callbacks"])
    return states[0]


def test_resume_keeps_one_best_file_with_the_best_score(tmp_path, synthetic_shards):
    run_dir = tmp_path / "best" / "version_0"
    cli_main(["fit", *_args(tmp_path, synthetic_shards, 4)])
    tracker = _tracker(read_checkpoint(run_dir / "checkpoints" / "last.ckpt"))
    # last.ckpt is written after ModelCheckpoint updated its tracker in the same validation
    assert len(tracker["best_k_models"]) == 1 and Path(tracker["best_model_path"]).is_file(), tracker
    cli_main(["fit", *_args(tmp_path, synthetic_shards, 6), "--ckpt_path=last"])
    scores = [v for _, v in logged(read_metrics(run_dir, "metrics.attempt-0.csv") + read_metrics(run_dir), "val/loss")]
    assert len(scores) == 3  # validations at steps 2, 4 (first attempt), 6 (resumed)
    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1, best
    tracker = _tracker(read_checkpoint(best[0]))
    assert abs(tracker["best_k_models"][str(best[0])] - min(scores)) < 1e-6, (tracker, scores)
    assert _tracker(read_checkpoint(run_dir / "checkpoints" / "last.ckpt"))["best_model_path"] == str(best[0])


def test_ckpt_path_best_picks_the_best_score_not_the_newest_file(tmp_path, synthetic_shards):
    run_dir = tmp_path / "best" / "version_0"
    cli_main(["fit", *_args(tmp_path, synthetic_shards, 4, "--checkpoint.save_top_k=2")])
    files = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert len(files) == 2
    scores = {p: _tracker(read_checkpoint(p))["best_k_models"][str(p)] for p in files}
    best, worst = min(files, key=scores.get), max(files, key=scores.get)
    assert scores[best] < scores[worst]
    newest = max(p.stat().st_mtime for p in files)
    os.utime(worst, (newest + 60, newest + 60))  # the worst file is now the newest on disk
    # what `python -m main validate ... --ckpt_path best` resolves to (the CLI calls resolve_ckpt_path before it builds anything)
    cfg = parse_config(["validate", *_args(tmp_path, synthetic_shards, 4), "--ckpt_path=best"]).validate
    assert Path(resolve_ckpt_path("best", cfg)) == best
    cfg = parse_config(["validate", *_args(tmp_path, synthetic_shards, 4, "--checkpoint.mode=max"), "--ckpt_path=best"]).validate
    assert Path(resolve_ckpt_path("best", cfg)) == worst  # checkpoint.mode: max picks the other end
