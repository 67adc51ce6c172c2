"""The diffusers peer baseline (benchmarks/peer_diffusers.py) runs end to end at a tiny size and its fills keep the
known pixels bit for bit.

The real comparison trains for hours on a CPU; this run uses 32 px scenes, a handful of steps and 4 held-out scenes,
so it checks the code path (both models trained on the same batches by the real Trainer, FLOPs, time per step,
profile, scoring, JSON), not which model is better.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("diffusers")

from benchmarks import peer_diffusers  # noqa: E402
from benchmarks.inpainting_study import held_out_cases  # noqa: E402
from benchmarks.quality import FIGURES, build  # noqa: E402


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        peer_diffusers.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "diffusers" in text and "--prediction" in text and "--peer-channels" in text


TINY = ["--size", "32", "--steps", "3", "--seeds", "1", "--batch-size", "4", "--train-images", "8", "--held-out", "4",
        "--val-images", "2", "--k", "2", "--gain-grid", "1", "--warmup-steps", "1", "--time-steps", "2", "--threads", "1"]


def test_peer_baseline_runs_end_to_end(tmp_path, one_thread):
    out = tmp_path / "peer_diffusers.json"
    result = peer_diffusers.main([*TINY, "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["table"] == json.loads(json.dumps(result["table"]))
    names = [peer_diffusers.OURS, "diffusers epsilon"]
    assert set(written["models"]) == set(names)
    params = {n: written["models"][n]["params"] for n in names}
    assert params[peer_diffusers.OURS] > 0 and 0.9 <= params["diffusers epsilon"] / params[peer_diffusers.OURS] <= 1.1
    for name in names:
        assert written["flops_per_step"][name] > 0 and written["seconds_per_step"][name] > 0
        assert written["profile"][name]["top_ops"] and written["profile"][name]["total_self_cpu_s"] > 0
        row = written["table"][name]
        assert row["runs"] == 1 and all(math.isfinite(row[k][0]) for k in FIGURES)
    assert written["same_batches"] is True  # both trained on the same ShardDataModule stream
    # a second seed run in another process (--first-seed 1), then merged: two runs per model, spreads over them
    second = tmp_path / "seed1.json"
    peer_diffusers.main([*TINY, "--first-seed", "1", "--data-dir", str(tmp_path / "data"), "--out", str(second)])
    merged = peer_diffusers.main(["--merge", str(out), str(second), "--out", str(tmp_path / "merged.json")])
    assert [r["seed"] for r in merged["per_seed"][peer_diffusers.OURS]] == [0, 1]
    for name in names:
        assert merged["table"][name]["runs"] == 2 and merged["settings"]["seeds"] == 2
        values = [r["mae_mean_k"] for r in merged["per_seed"][name]]
        assert merged["table"][name]["mae_mean_k"][0] == pytest.approx(sum(values) / 2)
    with pytest.raises(SystemExit, match="repeat seeds"):
        peer_diffusers.main(["--merge", str(out), str(out), "--out", str(tmp_path / "twice.json")])


def test_peer_fill_keeps_known_pixels_bit_exact(one_thread):
    cases = held_out_cases(4, 32)
    torch.manual_seed(0)
    ours = build({"single_stage": True}, "v", 1e-3, 10)
    peer = peer_diffusers.PeerDiffusersModule(peer_diffusers.PEER_CHANNELS, "v_prediction", 3, ours.optimizer_factory,
                                              ours.lr_scheduler_factory, size=32).eval()
    fill = peer_diffusers.peer_sampler(peer, 0)
    out = fill(cases.image, cases.mask, cases.category)
    known = (cases.mask <= 0.5).expand_as(cases.image)
    assert out.shape == cases.image.shape and torch.isfinite(out).all()
    assert torch.equal(out[known], cases.image[known])
    assert not torch.equal(out[~known], cases.image[~known])  # the holes were filled
