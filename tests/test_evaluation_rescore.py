"""benchmarks/rescore.py end to end at a tiny size: resumable chunks, refused setting changes, the report section."""
from __future__ import annotations

import json

import pytest

from benchmarks import rescore, results_report
from benchmarks.inpainting_study import CASES, choose, held_out_cases


def test_held_out_cases_cycle_every_case_with_clean_plate_targets():
    cases = held_out_cases(5, 64)
    assert cases.keys == [f"test_{i:07d}" for i in range(5)]
    assert [bool(r) for r in cases.removal] == [c[0] == "fg object (removal)" for c in CASES]
    removal = int(cases.removal.nonzero()[0, 0])
    hole = cases.mask[removal, 0] > 0.5
    assert (cases.target[removal][:, hole] == cases.clean[removal][:, hole]).all()
    assert (cases.target[removal][:, ~hole] == cases.image[removal][:, ~hole]).all()
    again = held_out_cases(2, 64, start=3)  # a chunk of scenes is the same whatever else is drawn
    assert (again.mask == cases.mask[3:5]).all() and again.keys == cases.keys[3:5]


def test_choose_by_realism_and_removal_then_mean_of_k():
    rows = {"blur": {"swd": 300.0, "residue": 0.0, "mae_mean_k": 0.20},
            "sharp": {"swd": 150.0, "residue": 0.02, "mae_mean_k": 0.30},
            "sharp twin": {"swd": 151.0, "residue": 0.02, "mae_mean_k": 0.25},
            "hallucinating": {"swd": 120.0, "residue": 0.40, "mae_mean_k": 0.10}}
    # 150 + 20 and 151 + 20 tie within 2 %; the lower MAE of the mean of K wins; one sample's MAE plays no part
    assert choose(list(rows.items())) == "sharp twin"


def test_rescore_tiny_resumes_and_renders(tmp_path, capsys):
    out = tmp_path / "rescore.json"
    args = ["--scenes", "2", "--k", "2", "--chunk", "1", "--steps", "2", "2", "2", "--swd-patches", "16", "--out", str(out)]
    first = rescore.main(args)
    assert set(first["tables"]) == {"C2F demo model", "mean fill", "harmonic", "Telea"}
    model = first["tables"]["C2F demo model"]
    assert model[0]["group"] == "all" and model[0]["count"] == 2 and model[0]["swd"] > 0
    assert {r["value"] for r in model if r["group"] == "mask type"} == {"fg object", "fg object (removal)"}
    assert first["tables"]["mean fill"][0]["mae_mean_k"] == pytest.approx(first["tables"]["mean fill"][0]["mae_sample"])  # K = 1
    chunks = sorted((tmp_path / "rescore_chunks").glob("chunk_*.pt"))
    assert len(chunks) == 2
    chunks[1].unlink()  # as if killed during the second chunk: only that one is recomputed
    capsys.readouterr()
    again = rescore.main(args)
    printed = capsys.readouterr().out
    assert "chunk 1/2: done before, skipped" in printed and "chunk 2/2: 1 scenes" in printed
    assert json.dumps(again["tables"]) == json.dumps(first["tables"])  # deterministic: same figures
    with pytest.raises(SystemExit, match="other settings"):
        rescore.main([*args[:3], "3", *args[4:]])  # --k 3 into the same work dir
    # a model file retrained in place (same path, other bytes) never reuses the chunks of the file it replaced
    model_file, work = tmp_path / "model.ckpt", tmp_path / "copy_chunks"
    model_file.write_bytes(rescore.MODEL.read_bytes())
    one = ["--scenes", "1", "--k", "1", "--steps", "2", "2", "2", "--swd-patches", "16", "--out", str(tmp_path / "copy.json"),
           "--model", str(model_file), "--work-dir", str(work)]
    rescore.main(one)
    model_file.write_bytes(rescore.MODEL.read_bytes()[::-1])
    with pytest.raises(SystemExit, match="other settings"):
        rescore.main(one)
    text = results_report.rescore_section(json.loads(out.read_text()))
    assert "| C2F demo model |" in text and "fg object (removal)" in text and "**Reading.**" in text


def test_paired_compare_of_two_rescores_of_the_same_cases(tmp_path):
    """Two re-scores of the same 4 cases (other DDIM steps): per-metric paired differences whose mean equals the
    difference of the per-case values, an interval around it, and a refusal when the cases differ."""
    from benchmarks import paired_compare

    def run(name, steps, scenes=4):
        rescore.main(["--scenes", str(scenes), "--k", "1", "--chunk", "2", "--steps", *steps, "--swd-patches", "16",
                      "--out", str(tmp_path / f"{name}.json"), "--work-dir", str(tmp_path / name)])
        return tmp_path / name

    a, b = run("a", ["2", "2", "2"]), run("b", ["3", "2", "2"])
    result = paired_compare.main(["--a", str(a), "--b", str(b), "--resamples", "200", "--out", str(tmp_path / "p.json")])
    rows_a, rows_b = paired_compare.case_rows(a, "C2F demo model"), paired_compare.case_rows(b, "C2F demo model")
    mae = result["groups"]["all cases"]["mae_mean_k"]
    expected = sum(rows_a[k]["mae_mean_k"] - rows_b[k]["mae_mean_k"] for k in rows_a) / len(rows_a)
    assert mae["n"] == 4 and mae["diff"] == pytest.approx(expected) and mae["diff"] != 0
    assert mae["ci95"][0] <= mae["diff"] <= mae["ci95"][1] and mae["a_lower"] + mae["a_higher"] <= 4
    assert json.loads((tmp_path / "p.json").read_text())["groups"]["all cases"]["mae_mean_k"]["diff"] == pytest.approx(expected)
    with pytest.raises(SystemExit, match="other cases"):
        paired_compare.main(["--a", str(a), "--b", str(run("c", ["2", "2", "2"], scenes=2)), "--out", str(tmp_path / "q.json")])
