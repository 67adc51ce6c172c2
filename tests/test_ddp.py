"""DDP for real: two CPU processes with the gloo backend, started by `python -m main fit` in a
subprocess, each recording the sample keys it received (callbacks.sample_audit.SampleAudit)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ops_runs import logged, read_metrics, run_main, tiny_fit_args



@pytest.mark.slow
def test_two_gloo_ranks_train_on_different_samples_and_write_one_checkpoint(synthetic_shards, tmp_path):
    # The tiny config's own callbacks (EMA, ImageLogger) stay on: both must work under DDP.
    run_main(
        [
            "fit", *tiny_fit_args(synthetic_shards, max_steps=4, val_every=2),
            "--trainer.callbacks+=callbacks.sample_audit.SampleAudit",
            "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
            "--data.init_args.val_batch_size=2",
        ],
        cwd=tmp_path,
        timeout=240,
    )
    run_dirs = list((tmp_path / "runs" / "lcg_tiny").iterdir())
    assert len(run_dirs) == 1, f"the two ranks must share one run directory, got {run_dirs}"
    run_dir = run_dirs[0]
    audits = [json.loads((run_dir / "sample_audit" / f"rank{r}.json").read_text()) for r in (0, 1)]

    # Both ranks ran the whole loop in a world of two.
    assert [a["rank"] for a in audits] == [0, 1]
    assert all(a["world_size"] == 2 and a["global_step"] == 4 for a in audits)
    # Equal batch counts (no rank waits in a collective for a batch the other never gets).
    assert [len(a["train"]) for a in audits] == [4, 4]
    assert len(audits[0]["validate"]) == len(audits[1]["validate"]) == 4  # 2 validations x 2 batches
    # Different training samples: each rank draws its own resampled stream of shards.
    train0, train1 = ([k for batch in a["train"] for k in batch] for a in audits)
    assert train0 != train1, "both ranks trained on the identical sample sequence"
    # Validation: disjoint fixed slices whose union is the whole validation set (no duplicated
    # samples biasing the synced metrics), the same slice at every validation.
    val0, val1 = ({k for batch in a["validate"] for k in batch} for a in audits)
    assert not val0 & val1, f"ranks validated on the same samples: {sorted(val0 & val1)}"
    assert len(val0 | val1) == synthetic_shards.counts["val"]
    assert audits[0]["validate"][:2] == audits[0]["validate"][2:]

    # One checkpoint set, written once (rank 0), loadable, at the final step.
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts.count("last.ckpt") == 1 and len([c for c in ckpts if c.startswith("best-")]) == 1, ckpts
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 4
    assert "current_model_state" in state, "the EMA callback's raw weights are missing from the checkpoint"
    # Image grids: written once per validation by rank 0, inside the shared run directory.
    grids = sorted(p.name for p in (run_dir / "images" / "val").iterdir())
    assert grids == ["inpainting_e000_s0000002.png", "inpainting_e000_s0000004.png"], grids
    # Metrics synced across ranks were logged once per validation.
    assert len(logged(read_metrics(run_dir), "val/loss")) == 2


@pytest.mark.slow
def test_c2f_all_stages_under_ddp(synthetic_shards, tmp_path):
    """Joint training of all C2F stages samples one stage per step: under DDP the other stages are unused in
    that step, which failed on step 2 ("parameters that were not used") until the module told DDP so."""
    run_main(
        [
            "fit", "--config", str(Path(__file__).resolve().parents[1] / "configs/c2f/tiny.yaml"),
            f"--data.init_args.train_shards={synthetic_shards.train}",
            f"--data.init_args.val_shards={synthetic_shards.val}", "--data.init_args.synthetic_dir=null",
            "--data.init_args.samples_per_epoch=32", "--model.init_args.val_sampling_steps=[1,1,1]",
            "--trainer.max_steps=4", "--trainer.val_check_interval=4", "--trainer.limit_val_batches=1",
            "--trainer.log_every_n_steps=1", "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    (run_dir,) = (tmp_path / "runs" / "c2f_tiny").iterdir()
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 4
    rows = read_metrics(run_dir)
    trained = {key.split("/")[1] for key in rows[0] if key.startswith("train/s") and logged(rows, key)}
    assert len(trained) >= 2, trained  # several stages trained, one per step
