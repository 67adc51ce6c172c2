"""The learning studies (convergence, ablation) and their report keep running: each script end to end at a tiny size.

The real runs take an hour or more on a CPU (docs/results.md); these runs use a handful of scenes and optimizer
steps, so they check the code path (real Lightning training, sampling, scoring, JSON, grid, Markdown), not quality.
"""
from __future__ import annotations

import json

from PIL import Image

from benchmarks import convergence, quality, results_report


def test_convergence_quality_and_report_run_end_to_end(tmp_path):
    data = str(tmp_path / "data")
    results = tmp_path / "results"
    conv = convergence.main(["--steps", "2", "--probes", "1", "2", "--batch-size", "2", "--train-images", "8",
                             "--held-out", "2", "--ddim-steps", "2", "--only", "v+minsnr5", "--warmup", "1",
                             "--data-dir", data, "--out", str(results / "convergence.json")])
    assert [r["label"] for r in conv["rows"]] == ["v+minsnr5"]
    assert [step for step, _ in conv["rows"][0]["curve"]] == [1, 2]
    assert 0 < conv["mean_fill_hole_mae"] < 2 and (results / "convergence.png").is_file()

    qual = quality.main(["--steps", "2", "--seeds", "1", "--batch-size", "2", "--train-images", "8", "--held-out", "2",
                         "--val-images", "2", "--k", "1", "--sampling-steps", "2", "2", "--gain-grid", "1", "2", "--only", "full",
                         "no LCG", "--data-dir", data,
                         "--out", str(results / "quality.json")])
    # the trained variants asked for, the gain-1 resampling of the full model, and the weight-free baselines
    assert set(qual["table"]) == {"full", "gain 1", "no LCG", "mean fill", "harmonic", "Telea"}
    for row in qual["table"].values():  # the issue-20 measures (SWD, removal, MAE of the mean of K)
        assert 0 < row["mae_mean_k"][0] < 2 and row["swd"][0] > 0 and 0 <= row["residue"][0] <= 1 and row["runs"] == 1
    written = json.loads((results / "quality.json").read_text())["table"]
    assert {k: v["swd"][0] for k, v in written.items()} == {k: v["swd"][0] for k, v in qual["table"].items()}
    grid = Image.open(results / "quality.png")
    assert grid.height > 2 * 64  # a labelled row per variant

    out = tmp_path / "results.md"
    text = results_report.main(["--results", str(results), "--out", str(out)])
    assert out.read_text() == text
    assert "v+minsnr5" in text and "## 5. Ablation study" in text and "no LCG" in text
    assert "Not measured yet: run `python benchmarks/train_demo.py`" in text  # no demo_model.json in this folder
