"""Synthetic shards carry clean plates (<key>.bg.png / .bgseg.png) and `inspect --check` checks them."""
import io
import json

import numpy as np
import webdataset as wds
from PIL import Image

from datamodules.shard_files import resolve_shards
from datamodules.shards import decode_segmentation, encode_segmentation, main
from datamodules.synthetic import SYNTHETIC_CLASSES, synthetic_scene_layers


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_synthetic_shards_hold_the_clean_plate_of_each_scene(synthetic_shards):
    shard = resolve_shards(synthetic_shards.test)[0]
    sample = next(iter(wds.DataPipeline(wds.SimpleShardList([shard]), wds.tarfile_to_samples())))
    index = int(sample["__key__"].rsplit("_", 1)[1])
    image, seg, clean, clean_seg = synthetic_scene_layers(0 * 100_000_000 + 20_000_000 + index, 64)  # test split of seed 0
    assert (np.asarray(Image.open(io.BytesIO(sample["png"]))) == image).all()
    assert (np.asarray(Image.open(io.BytesIO(sample["bg.png"])).convert("RGB")) == clean).all()
    assert (decode_segmentation(sample["bgseg.png"]) == clean_seg).all()
    assert main(["inspect", shard, "--check"]) == 0


def test_inspect_check_reports_bad_clean_plates(tmp_path, capsys):
    (tmp_path / "classes.json").write_text(json.dumps({"classes": SYNTHETIC_CLASSES}))
    image, seg, clean, clean_seg = synthetic_scene_layers(1, 32)
    base = {"png": png(image), "seg.png": encode_segmentation(seg)}
    with wds.TarWriter(str(tmp_path / "x-000000.tar")) as sink:
        sink.write({"__key__": "ok", **base, "bg.png": png(clean), "bgseg.png": encode_segmentation(clean_seg)})
        sink.write({"__key__": "small", **base, "bg.png": png(clean[:16]), "bgseg.png": encode_segmentation(clean_seg)})
        sink.write({"__key__": "broken", **base, "bg.png": b"garbage", "bgseg.png": encode_segmentation(clean_seg)})
        sink.write({"__key__": "noseg", **base, "bg.png": png(clean)})
        sink.write({"__key__": "ids", **base, "bg.png": png(clean), "bgseg.png": encode_segmentation(clean_seg + 50)})
    assert main(["inspect", str(tmp_path / "x-*.tar"), "--check"]) == 1
    out = capsys.readouterr().out
    assert "clean plate of the wrong size" in out and ":small" in out
    assert "undecodable clean plate" in out and ":broken" in out
    assert "lacks .bgseg.png" in out and ":noseg" in out
    assert "clean-plate segmentation ids not in the class list" in out and ":ids" in out
    assert ":ok" not in out
