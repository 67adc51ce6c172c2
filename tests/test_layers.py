"""The layers below the LightningModules never import Lightning: networks, diffusion math, masks, inpainters,
metrics and the ripple steps run (and C2F inference runs) in a process where ``lightning`` was never imported."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PURE_PACKAGES = ("networks", "diffusion", "masks", "inpainters", "evaluation", "ripple", "optim", "safe_io")

_SCRIPT = r"""
import importlib, pkgutil, sys, tempfile
import torch
for name in PACKAGES:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, prefix=name + "."):
        importlib.import_module(info.name)
from diffusion.c2f import C2FModel
from inpainters.c2f import C2FInpainter
unet = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}
model = C2FModel([unet, unet], {"tokens_per_category": 2, "dim": 16}, resolutions=[16, 32],
                 sampling={"steps": [2, 1], "gains": [2.0, 1.0]})
path = tempfile.mkdtemp() + "/c2f.ckpt"
model.save(path)
image, mask = torch.rand(1, 3, 32, 32) * 2 - 1, torch.zeros(1, 1, 32, 32)
mask[..., 8:20, 8:20] = 1
with torch.no_grad():
    out = C2FInpainter(path)(image, mask)
assert torch.equal(out[mask.expand_as(out) == 0], image[mask.expand_as(image) == 0])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric"))
print("LEAKED", leaked)
"""


def test_inference_and_pure_packages_never_import_lightning():
    script = _SCRIPT.replace("PACKAGES", repr(PURE_PACKAGES))
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEAKED []" in proc.stdout, proc.stdout
