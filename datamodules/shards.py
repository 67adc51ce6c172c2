"""WebDataset shard writer and command line.

Shard format (one sample = files sharing a key inside a POSIX tar, see docs/data.md)::

    <key>.jpg | <key>.png     the RGB image (original bytes unless resized)
    <key>.seg.png             optional class-id map, 8-bit (ids < 256) or 16-bit grey PNG, same size
    <key>.bg.png              optional clean plate: the RGB background without the foreground objects, same size
                              (synthetic scenes; the ground truth of object removal)
    <key>.bgseg.png           its class-id map (encoded like seg.png), present with bg.png
    <key>.json                {"key", "source", "width", "height", "has_seg"}

and ``classes.json`` (see ``datamodules.class_list``) next to the shards.

Commands::

    python -m datamodules.shards write --images DIR --out DIR [--segmentation DIR --classes FILE]
        [--prefix train] [--max-count 1000] [--max-size-mb 1024] [--resize 512] [--overwrite]
    python -m datamodules.shards synthetic --out data/synthetic [--train 512 --val 64 --test 64 --size 64] [--overwrite]
    python -m datamodules.shards inspect 'data/synthetic/train-*.tar' [--check]

Exit status: 0 done; 1 ``write`` wrote no sample (every input skipped) or ``inspect --check`` found problems;
2 refused before writing (missing or empty input folder, output folder not writable, shards of an earlier run
with the same prefix in ``--out`` without ``--overwrite``).
"""
from __future__ import annotations

import argparse
import errno
import io
import json
import multiprocessing
import os
import re
import sys
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from datamodules.class_list import ClassList
from safe_io.image_decoding import UNDECODABLE, ImageDecodeError, read_image
from datamodules.shard_files import (
    CLASS_LIST_NAME,
    CLEAN_PLATE_MEMBER,
    CLEAN_PLATE_SEG_MEMBER,
    IMAGE_EXTENSIONS,
    SEG_MEMBER,
    load_class_list,
    missing_class_list,
    resolve_shards,
    sample_keys,
)
from datamodules.synthetic import SYNTHETIC_CLASSES, scene_seed, synthetic_scene_layers
from safe_io import UnsafeNameError, check_name

META_SUFFIX = "json"


class ShardOutputError(ValueError):
    """The writer's output folder cannot be used: not writable, a file, or holding shards of an earlier run."""


class NothingWrittenError(ValueError):
    """Every input was skipped: no shard was written (``summary`` says why, by reason)."""

    def __init__(self, message: str, summary: "WriteSummary") -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class WriteSummary:
    """What a writer run produced: samples written, shard files, and skipped inputs grouped by reason."""

    written: int = 0
    shards: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    without_segmentation: int = 0

    def skip(self, reason: str, item: str) -> None:
        """Record a skipped input."""
        self.skipped.setdefault(reason, []).append(item)

    @property
    def skipped_count(self) -> int:
        """Total number of skipped inputs."""
        return sum(len(v) for v in self.skipped.values())

    def format(self, examples: int = 3) -> str:
        """Human-readable summary (a few example files per skip reason)."""
        lines = [f"written: {self.written} samples in {len(self.shards)} shard(s)"]
        if self.without_segmentation:
            lines.append(f"written without a segmentation map: {self.without_segmentation}")
        lines.append(f"skipped: {self.skipped_count}")
        for reason, items in sorted(self.skipped.items()):
            shown = ", ".join(items[:examples]) + (", ..." if len(items) > examples else "")
            lines.append(f"  {len(items)} x {reason}: {shown}")
        return "\n".join(lines)


def _bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a progress bar the caller wants: shown on a terminal only (None), never (True)."""
    return None if progress else True


def sample_key(relative: Path) -> str:
    """WebDataset key of an input file: its path without extension, '/' -> '__', '.' -> '_' (keys must not contain dots)."""
    stem = relative.with_suffix("").as_posix()
    return stem.replace("/", "__").replace(".", "_")


def encode_segmentation(seg: np.ndarray) -> bytes:
    """PNG bytes of a class-id map: 8-bit when every id < 256, else 16-bit."""
    if seg.max(initial=0) < 256:
        image = Image.fromarray(seg.astype(np.uint8), mode="L")
    else:
        image = Image.fromarray(seg.astype(np.uint16))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_segmentation(data: bytes) -> np.ndarray:
    """Class-id map from ``<key>.seg.png`` bytes (8- or 16-bit grey; palette PNGs give their indices)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode in ("RGB", "RGBA", "LA"):
            raise ValueError(f"segmentation PNG has mode {image.mode}; it must be single-channel class ids (L, P or I;16)")
        return np.asarray(image).astype(np.int64)


def _encode_image(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpg":
        image.save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _resize_pair(image: Image.Image, seg: np.ndarray | None, shorter: int):
    w, h = image.size
    scale = shorter / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = image.resize(size, Image.BICUBIC, reducing_gap=3.0)
    if seg is not None:
        seg_image = Image.fromarray(seg.astype(np.int32), mode="I").resize(size, Image.NEAREST)
        seg = np.asarray(seg_image).astype(np.int64)
    return image, seg


def _list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)


def _find_segmentation(seg_root: Path, relative: Path) -> Path | None:
    for candidate in (seg_root / relative.with_suffix(".png"), seg_root / relative.parent / (relative.stem + ".seg.png")):
        if candidate.is_file():
            return candidate
    return None


def existing_shards(out_dir: str | Path, prefix: str) -> list[Path]:
    """The shards the writer names ``<prefix>-NNNNNN.tar`` in ``out_dir`` (exactly that prefix: ``train`` does
    not match ``train-extra-000000.tar``), sorted."""
    pattern = re.compile(rf"{re.escape(prefix)}-\d+\.tar")
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file())


def prepare_output_folder(out_dir: str | Path, prefixes: Sequence[str], overwrite: bool = False) -> list[Path]:
    """Make sure shards can be written to ``out_dir`` without mixing datasets; returns the shards it removed.

    Creates the folder, checks it is writable (by creating and removing a file: permission bits say nothing for
    root or read-only mounts) and refuses when it holds ``<prefix>-NNNNNN.tar`` shards of an earlier run, since
    the new shards would overwrite some of them and leave the rest, and the ``<prefix>-*.tar`` glob would read
    both datasets. With ``overwrite`` those shards (and only those) are deleted first.

    Raises:
        ShardOutputError: naming the folder (and the shard count and ``--overwrite`` for earlier shards).
    """
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise ShardOutputError(f"output folder {folder} is an existing file, not a folder; choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ShardOutputError(
            f"cannot write to the output folder {folder} ({err.strerror or err}); choose a writable --out or fix "
            f"the folder's permissions"
        ) from err
    old = [p for prefix in prefixes for p in existing_shards(folder, prefix)]
    if old and not overwrite:
        globs = " / ".join(f"{prefix}-*.tar" for prefix in prefixes)
        shown = ", ".join(p.name for p in old[:3]) + (", ..." if len(old) > 3 else "")
        raise ShardOutputError(
            f"output folder {folder} already holds {len(old)} shard(s) of an earlier run ({shown}); writing there would "
            f"overwrite some of them and leave the others, so the glob {globs} would mix two datasets. Pass --overwrite "
            f"to delete those {len(old)} shard(s) first, or choose another --out or --prefix"
        )
    for path in old:
        path.unlink()
    return old


def _open_writer(out_dir: Path, prefix: str, max_count: int, max_size: float) -> wds.ShardWriter:
    check_name(prefix, "--prefix")
    out_dir.mkdir(parents=True, exist_ok=True)
    return wds.ShardWriter(str(out_dir / f"{prefix}-%06d.tar"), maxcount=max_count, maxsize=max_size, verbose=0)


def _write_failed(writer: wds.ShardWriter, err: OSError) -> ShardOutputError:
    """The error for a write that failed (disk full, quota, I/O): the shard being written is closed and removed."""
    partial = getattr(writer, "fname", None)
    stream, writer.tarstream = getattr(writer, "tarstream", None), None
    if stream is not None:
        try:
            stream.close()
        except OSError:
            pass  # the disk is still full: the file is deleted below anyway
    if partial is not None:
        Path(partial).unlink(missing_ok=True)
    why = "the disk is full" if err.errno == errno.ENOSPC else "the write failed"
    return ShardOutputError(
        f"cannot write shard {partial}: {err.strerror or err} ({why}); the partial shard {partial} was removed, the "
        f"complete shards written before it were kept. Free space (or choose another --out) and run again with --overwrite"
    )


def _finish(writer: wds.ShardWriter, summary: WriteSummary, out_dir: Path, prefix: str) -> None:
    try:
        writer.close()
    except OSError as err:  # the last shard's final flush
        raise _write_failed(writer, err) from err
    if summary.written == 0:  # the writer opens its first shard eagerly: do not leave an empty tar behind
        for path in existing_shards(out_dir, prefix):
            path.unlink()
    summary.shards = [str(p) for p in existing_shards(out_dir, prefix)]


@dataclass
class _FileJob:
    path: Path
    relative: Path
    key: str
    seg_root: Path | None
    class_list: ClassList
    classes_name: str
    resize: int | None


@dataclass
class _FileResult:
    sample: dict | None = None
    skip_reason: str | None = None
    skip_item: str = ""
    without_segmentation: int = 0


def _prepare_file(job: _FileJob) -> _FileResult:
    """Decode, validate, optionally resize and encode one input image (+ seg map); runs in writer workers."""
    path = job.path
    try:
        data = path.read_bytes()
        decoded = read_image(data, str(path))
    except OSError as err:
        return _FileResult(skip_reason="unreadable file", skip_item=f"{path} ({err.strerror or err})")
    except ImageDecodeError as err:
        detail = type(err.__cause__).__name__ if err.reason == UNDECODABLE and err.__cause__ is not None else str(err)
        return _FileResult(skip_reason=err.reason, skip_item=f"{path} ({detail})" if err.reason == UNDECODABLE else detail)
    image = decoded.image
    seg, without = None, 0
    if job.seg_root is not None:
        seg_path = _find_segmentation(job.seg_root, job.relative)
        if seg_path is None:
            without = 1
        else:
            try:
                seg = decode_segmentation(seg_path.read_bytes())
            except Exception as err:
                return _FileResult(skip_reason="undecodable segmentation map", skip_item=f"{seg_path} ({err})")
            if seg.shape != (image.height, image.width):
                return _FileResult(
                    skip_reason="segmentation map size differs from the image",
                    skip_item=f"{seg_path} is {seg.shape[1]}x{seg.shape[0]}, image {image.width}x{image.height}",
                )
            unknown = job.class_list.unknown_ids(np.flatnonzero(np.bincount(seg.ravel())))
            if unknown:
                return _FileResult(
                    skip_reason=f"segmentation ids not in the class list {job.classes_name}", skip_item=f"{seg_path} (ids {unknown})"
                )
    fmt = "jpg" if decoded.format == "JPEG" else "png"
    if job.resize is not None:
        image, seg = _resize_pair(image, seg, job.resize)
        data = _encode_image(image, fmt)
    elif not (decoded.format in ("JPEG", "PNG") and decoded.mode == "RGB" and decoded.bit_depth == 8):
        data = _encode_image(image, fmt)  # 8-bit RGB of any other mode / depth (16-bit scaled, alpha dropped)
    # else: the file's own bytes; an EXIF orientation in them is applied by every reader (safe_io.image_decoding)
    meta = {"key": job.key, "source": job.relative.as_posix(), "width": image.width, "height": image.height, "has_seg": seg is not None}
    sample = {"__key__": job.key, fmt: data, META_SUFFIX: json.dumps(meta).encode()}
    if seg is not None:
        sample[SEG_MEMBER] = encode_segmentation(seg)
    return _FileResult(sample=sample, without_segmentation=without)


def write_image_folder(
    images: str | Path,
    out_dir: str | Path,
    segmentation: str | Path | None = None,
    classes: str | Path | None = None,
    prefix: str = "train",
    max_count: int = 1000,
    max_size: float = 1e9,
    resize: int | None = None,
    progress: bool = True,
    workers: int = 1,
    overwrite: bool = False,
) -> WriteSummary:
    """Write every image under ``images`` (recursively) into WebDataset shards.

    Args:
        images: folder of jpg / png / webp / bmp images.
        out_dir: output folder; shards are ``<out_dir>/<prefix>-000000.tar`` ... and ``classes.json``.
        segmentation: optional folder of class-id PNGs matched by relative path and stem
            (``a/b.jpg`` -> ``a/b.png`` or ``a/b.seg.png``); needs ``classes``.
        classes: class list JSON naming every id as ``thing``, ``stuff`` or ``ignore``.
        prefix: shard name prefix, usually the split (``train``, ``val``, ``test``).
        max_count: at most this many samples per shard.
        max_size: at most this many bytes per shard.
        resize: resize so the shorter side is this many pixels (images bicubic, seg maps nearest).
        progress: show a tqdm progress bar.
        workers: processes that decode / validate / resize images in parallel (the tar is written by this
            process, in sorted file order, so the output does not depend on ``workers``).
        overwrite: delete the ``<prefix>-NNNNNN.tar`` shards an earlier run left in ``out_dir`` first (without it
            they are an error: the new and old shards would mix under one glob).

    Returns:
        A ``WriteSummary``. Skipped (with the reason): images that do not decode, are smaller than 8 px, are
        decompression bombs or have no faithful 8-bit conversion (``safe_io.image_decoding``), seg maps
        whose size differs from the image, seg maps with ids the class list does not name, undecodable seg
        maps, duplicate keys.

    Raises:
        FileNotFoundError: the image folder is missing or holds no images.
        ShardOutputError: ``out_dir`` is not writable or holds shards of an earlier run (see ``overwrite``).
        NothingWrittenError: every image was skipped (no shard is left behind; ``.summary`` has the reasons).
    """
    images, out_dir = Path(images), Path(out_dir)
    check_name(prefix, "--prefix")
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} does not exist" if not images.exists() else f"--images {images} is not a folder")
    if segmentation is not None and classes is None:
        raise ValueError("--segmentation needs --classes: a class list saying which ids are 'thing' and which 'stuff'")
    seg_root = Path(segmentation) if segmentation is not None else None
    if seg_root is not None and not seg_root.is_dir():
        raise FileNotFoundError(f"segmentation folder {seg_root} does not exist")
    class_list = ClassList.load(classes) if classes is not None else ClassList(source="<none>")
    files = _list_images(images)
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {images}: the folder is empty or holds other files; "
            f"nothing was written"
        )

    summary = WriteSummary()
    jobs, seen = [], set()
    for path in files:
        relative = path.relative_to(images)
        key = sample_key(relative)
        try:
            check_name(key, f"input {images}")
        except UnsafeNameError as err:
            summary.skip("unsafe key (over-long or odd characters in the file path)", f"{path} ({str(err).split(': ', 1)[1].split(';')[0]})")
            continue
        if key in seen:
            summary.skip("duplicate key (same path without extension)", str(path))
            continue
        seen.add(key)
        jobs.append(_FileJob(path, relative, key, seg_root, class_list, str(classes), resize))
    prepare_output_folder(out_dir, [prefix], overwrite)
    writer = _open_writer(out_dir, prefix, max_count, max_size)
    (out_dir / CLASS_LIST_NAME).write_text(class_list.to_json())
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(_prepare_file, jobs, chunksize=8) if pool is not None else map(_prepare_file, jobs)
        for result in tqdm(results, total=len(jobs), desc=f"writing {prefix} shards", unit="img", disable=_bar_disabled(progress)):
            if result.skip_reason is not None:
                summary.skip(result.skip_reason, result.skip_item)
                continue
            summary.without_segmentation += result.without_segmentation
            writer.write(result.sample)
            summary.written += 1
    except OSError as err:
        raise _write_failed(writer, err) from err
    finally:
        if pool is not None:
            pool.terminate()
        _finish(writer, summary, out_dir, prefix)
    if summary.written == 0:
        raise NothingWrittenError(
            f"no samples were written to {out_dir}: all {summary.skipped_count} image(s) under {images} were skipped "
            f"({', '.join(f'{len(v)} x {k}' for k, v in sorted(summary.skipped.items()))}); no {prefix}-*.tar was left "
            f"behind. Fix or replace the inputs (the summary lists examples) and run again",
            summary,
        )
    return summary


def _synthetic_samples(count: int, size: int, seed: int, split: str) -> Iterator[dict]:
    for i in range(count):
        image, seg, clean, clean_seg = synthetic_scene_layers(scene_seed(seed, split, i), size)
        key = f"{split}_{i:07d}"
        yield {
            "__key__": key,
            "png": _encode_image(Image.fromarray(image), "png"),
            SEG_MEMBER: encode_segmentation(seg),
            CLEAN_PLATE_MEMBER: _encode_image(Image.fromarray(clean), "png"),
            CLEAN_PLATE_SEG_MEMBER: encode_segmentation(clean_seg),
            META_SUFFIX: json.dumps({"key": key, "source": "synthetic", "width": size, "height": size, "has_seg": True}).encode(),
        }


def write_synthetic_shards(
    out_dir: str | Path,
    train: int = 512,
    val: int = 64,
    test: int = 64,
    size: int = 64,
    seed: int = 0,
    max_count: int = 256,
    progress: bool = True,
) -> dict[str, WriteSummary]:
    """Generate the procedural scene set as ``<out_dir>/{train,val,test}-NNNNNN.tar`` plus ``classes.json``.

    Args:
        out_dir: output folder.
        train: number of training samples.
        val: number of validation samples.
        test: number of test samples.
        size: square image size in pixels.
        seed: dataset seed (splits never share a scene).
        max_count: samples per shard.
        progress: show a tqdm progress bar.

    Returns:
        One ``WriteSummary`` per split.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for split, count in (("train", train), ("val", val), ("test", test)):
        summary = WriteSummary()
        if count > 0:
            writer = _open_writer(out_dir, split, max_count, 1e12)
            try:
                for sample in tqdm(
                    _synthetic_samples(count, size, seed, split), total=count, desc=f"synthetic {split}", unit="img", disable=_bar_disabled(progress)
                ):
                    writer.write(sample)
                    summary.written += 1
            except OSError as err:
                raise _write_failed(writer, err) from err
            finally:
                _finish(writer, summary, out_dir, split)
        summaries[split] = summary
    (out_dir / CLASS_LIST_NAME).write_text(ClassList(tuple(SYNTHETIC_CLASSES), "synthetic").to_json())
    return summaries


SYNTHETIC_DONE = ".complete"  # a folder holding this file is final: nothing is generated into it


def ensure_synthetic_set(
    out_dir: str | Path,
    counts: dict[str, int],
    size: int = 64,
    seed: int = 0,
    max_count: int = 256,
    wait_s: float = 120.0,
) -> None:
    """Generate each requested split of the synthetic set into ``out_dir`` unless it is already there.

    Each split is written into a staging folder, moved into place file by file and then marked with
    ``.complete-<split>`` (holding its count, size and seed), so concurrent callers (the rank 0 of every node)
    and earlier partial sets (e.g. only ``test`` for an evaluation) are safe. A split that exists with other
    settings is kept, with a warning. ``.complete`` marks a whole folder as final.

    Args:
        out_dir: the synthetic set's folder.
        counts: samples per split, e.g. ``{"train": 512, "val": 64, "test": 64}``; 0 skips a split.
        size: image size of newly generated splits.
        seed: dataset seed.
        max_count: samples per shard.
        wait_s: how long to wait for another process that is writing the same split.
    """
    import shutil
    import time
    import uuid
    import warnings

    target = Path(out_dir)
    if (target / SYNTHETIC_DONE).is_file():
        return
    target.mkdir(parents=True, exist_ok=True)
    for split, count in counts.items():
        if count <= 0:
            continue
        marker = target / f"{SYNTHETIC_DONE}-{split}"
        wanted = {"count": int(count), "size": int(size), "seed": int(seed)}
        deadline = time.monotonic() + wait_s
        while not marker.is_file() and any(target.glob(f"{split}-*.tar")) and time.monotonic() < deadline:
            time.sleep(1.0)  # another process is moving this split into place
        if marker.is_file():
            have = json.loads(marker.read_text())
            if have != wanted:
                warnings.warn(
                    f"{target}: the synthetic {split} split was generated with {have}, not {wanted}; using it as is. "
                    f"Delete {target} to regenerate it.",
                    UserWarning,
                    stacklevel=2,
                )
            continue
        if any(target.glob(f"{split}-*.tar")):
            raise FileExistsError(
                f"{target} holds {split}-*.tar shards without {marker.name}: an interrupted generation or shards that are "
                f"not the synthetic set; delete them or choose another synthetic_dir"
            )
        staging = target / f".staging-{split}-{uuid.uuid4().hex[:8]}"
        try:
            write_synthetic_shards(staging, **{s: (count if s == split else 0) for s in ("train", "val", "test")},
                                   size=size, seed=seed, max_count=max_count, progress=True)
            for path in sorted(staging.glob("*.tar")):
                os.replace(path, target / path.name)
            os.replace(staging / CLASS_LIST_NAME, target / CLASS_LIST_NAME)
            marker.write_text(json.dumps(wanted))
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def inspect_shards(spec: str | Sequence[str]) -> dict:
    """Per-shard sample counts and file suffixes, plus the class list (reads tar headers only)."""
    files = resolve_shards(spec)
    report = {"shards": [], "samples": 0, "suffixes": Counter()}
    for path in files:
        keys = sample_keys(path)
        report["shards"].append({"path": path, "samples": len(keys), "bytes": os.path.getsize(path)})
        report["samples"] += len(keys)
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                if member.isfile():
                    report["suffixes"][member.name.rpartition("/")[2].partition(".")[2]] += 1
    classes = load_class_list(files)
    report["classes"] = {"source": classes.source, "thing": classes.thing_ids, "stuff": classes.stuff_ids}
    report["suffixes"] = dict(report["suffixes"])
    return report


def check_samples(spec: str | Sequence[str], progress: bool = True) -> dict[str, list[str]]:
    """Decode every sample of the shards; problems grouped by kind (``{}`` when all is well).

    Checks: the tar reads to the end and holds at least one sample, each sample has an image that decodes the
    way training decodes it (``safe_io.image_decoding``: not too small, no decompression bomb, a faithful
    8-bit conversion), its seg map (if any) decodes, has the image's size and only ids of the class list next to
    the shards; a clean plate (``bg.png``, if any) decodes as RGB of the image's size and comes with a ``bgseg.png``
    that passes the seg-map checks.
    """
    files = resolve_shards(spec)
    classes = load_class_list(files)
    problems: dict[str, list[str]] = {}

    def report(kind: str, item: str) -> None:
        problems.setdefault(kind, []).append(item)

    for path in tqdm(files, desc="checking shards", unit="shard", disable=_bar_disabled(progress)):
        try:
            samples = list(wds.tarfile_to_samples()([{"url": path}]))
        except Exception as err:
            report("unreadable shard", f"{path} ({err!r})")
            continue
        if not samples:
            report("empty shard (no samples)", f"{path}: rewrite it or delete it")
            continue
        for sample in samples:
            where = f"{path}:{sample['__key__']}"
            try:
                check_name(sample["__key__"], f"shard {path}")
            except UnsafeNameError as err:
                report("unsafe key (names from data become output file names)", str(err).split(";")[0])
            ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
            if ext is None:
                report("no image", where)
                continue
            try:
                size = read_image(sample[ext], where).image.size
            except ImageDecodeError as err:
                cause = type(err.__cause__).__name__ if err.__cause__ is not None else ""
                report(err.reason, f"{where} ({cause})" if err.reason == UNDECODABLE else str(err))
                continue
            _check_clean_plate(sample, where, size, classes, report)
            if SEG_MEMBER not in sample:
                continue
            _check_seg(sample[SEG_MEMBER], "segmentation map", where, size, classes, report)
    missing = missing_class_list(files)
    if missing is not None:
        report("segmentation without a class list", f"{missing}; write classes.json next to the shards")
    return problems


def _check_seg(data: bytes, what: str, where: str, size: tuple[int, int], classes: ClassList, report) -> None:
    """Report an undecodable class-id map, one of another size than the image, or one with unknown ids."""
    try:
        seg = decode_segmentation(data)
    except Exception as err:
        report(f"undecodable {what}", f"{where} ({err})")
        return
    if seg.shape != (size[1], size[0]):
        report(f"{what} of the wrong size", f"{where} ({seg.shape[1]}x{seg.shape[0]} for {size[0]}x{size[1]})")
    elif len(classes) and classes.unknown_ids(np.flatnonzero(np.bincount(seg.ravel()))):
        report(f"{what} ids not in the class list".replace("segmentation map ids", "segmentation ids"),
               f"{where} (ids {classes.unknown_ids(np.unique(seg))})")


def _check_clean_plate(sample: dict, where: str, size: tuple[int, int], classes: ClassList, report) -> None:
    """Checks of the optional clean plate (``bg.png``) and its segmentation (``bgseg.png``)."""
    has_plate, has_seg = CLEAN_PLATE_MEMBER in sample, CLEAN_PLATE_SEG_MEMBER in sample
    if not has_plate and not has_seg:
        return
    if has_plate != has_seg:
        present, absent = (CLEAN_PLATE_MEMBER, CLEAN_PLATE_SEG_MEMBER) if has_plate else (CLEAN_PLATE_SEG_MEMBER, CLEAN_PLATE_MEMBER)
        report("clean plate without its segmentation (or the reverse)", f"{where} (has .{present}, lacks .{absent})")
    if has_plate:
        try:
            plate = read_image(sample[CLEAN_PLATE_MEMBER], f"{where}.{CLEAN_PLATE_MEMBER}").image
        except ImageDecodeError as err:
            report("undecodable clean plate", str(err))
        else:
            if plate.size != size:
                report("clean plate of the wrong size", f"{where} ({plate.size[0]}x{plate.size[1]} for {size[0]}x{size[1]})")
    if has_seg:
        _check_seg(sample[CLEAN_PLATE_SEG_MEMBER], "clean-plate segmentation map", where, size, classes, report)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datamodules.shards", description="Write and inspect WebDataset shards.")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write shards from an image folder (optional segmentation maps + class list)")
    w.add_argument("--images", required=True, help="folder of images (searched recursively)")
    w.add_argument("--out", required=True, help="output folder for <prefix>-NNNNNN.tar and classes.json")
    w.add_argument("--segmentation", default=None, help="folder of class-id PNGs matched by relative path + stem")
    w.add_argument("--classes", default=None, help="class list JSON (ids as thing / stuff / ignore)")
    w.add_argument("--prefix", default="train", help="shard name prefix, e.g. train / val / test")
    w.add_argument("--max-count", type=int, default=1000, help="max samples per shard")
    w.add_argument("--max-size-mb", type=float, default=1024.0, help="max shard size in MiB")
    w.add_argument("--resize", type=int, default=None, help="resize the shorter side to this many pixels")
    w.add_argument("--workers", type=int, default=1, help="parallel decode / resize processes")
    w.add_argument(
        "--overwrite", action="store_true",
        help="delete the <prefix>-*.tar shards of an earlier run in --out first (without it they are an error)",
    )
    w.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s = sub.add_parser("synthetic", help="generate the procedural synthetic scene set")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--train", type=int, default=512, help="training samples")
    s.add_argument("--val", type=int, default=64, help="validation samples")
    s.add_argument("--test", type=int, default=64, help="test samples")
    s.add_argument("--size", type=int, default=64, help="image size in pixels")
    s.add_argument("--seed", type=int, default=0, help="dataset seed")
    s.add_argument("--max-count", type=int, default=256, help="max samples per shard")
    s.add_argument("--overwrite", action="store_true", help="delete the train/val/test-*.tar shards already in --out first")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    i = sub.add_parser("inspect", help="print sample counts, file suffixes and the class list of shards")
    i.add_argument("shards", nargs="+", help="brace pattern, glob or files")
    i.add_argument("--check", action="store_true", help="also decode every sample and report broken ones (exit 1)")
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "write":
            summary = write_image_folder(
                args.images, args.out, args.segmentation, args.classes, args.prefix, args.max_count,
                args.max_size_mb * 2**20, args.resize, not args.no_progress, args.workers, args.overwrite,
            )
            print(summary.format())
        elif args.command == "synthetic":
            splits = [s for s in ("train", "val", "test") if getattr(args, s) > 0]
            prepare_output_folder(args.out, splits, args.overwrite)
            summaries = write_synthetic_shards(
                args.out, args.train, args.val, args.test, args.size, args.seed, args.max_count, not args.no_progress
            )
            for split, summary in summaries.items():
                print(f"[{split}] {summary.format()}")
            print(f"class list: {Path(args.out) / CLASS_LIST_NAME}")
        else:
            report = inspect_shards(args.shards)
            for shard in report["shards"]:
                empty = "  EMPTY: no samples" if shard["samples"] == 0 else ""
                print(f"{shard['path']}: {shard['samples']} samples, {shard['bytes'] / 2**20:.1f} MiB{empty}")
            print(f"total: {report['samples']} samples in {len(report['shards'])} shard(s)")
            print(f"files per suffix: {report['suffixes']}")
            print(f"class list {report['classes']['source']}: thing {report['classes']['thing']}, stuff {report['classes']['stuff']}")
            if args.check:
                problems = check_samples(args.shards)
                for kind, items in sorted(problems.items()):
                    print(f"  {len(items)} x {kind}: " + ", ".join(items[:5]) + (", ..." if len(items) > 5 else ""))
                print("check: all samples decode" if not problems else f"check: {sum(map(len, problems.values()))} problem(s)")
                if problems:
                    return 1
    except NothingWrittenError as err:
        print(err.summary.format())
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the disk filled up or the folder became unwritable while writing
        print(f"error: {err.strerror or err}: {err.filename or ''}; nothing more was written", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


def __getattr__(name: str):
    """``datamodules.shards.ShardDataModule`` (the name docs/conventions.md uses) without importing Lightning for the CLI."""
    if name == "ShardDataModule":
        from datamodules.shard_datamodule import ShardDataModule

        return ShardDataModule
    raise AttributeError(f"module 'datamodules.shards' has no attribute {name!r}")
