"""Seeding helpers shared by every mask generator (all randomness flows through ``np.random.Generator``)."""
from __future__ import annotations

import hashlib

import numpy as np


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Return ``rng`` itself when it is a Generator, else a new Generator seeded with it (None = OS entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def key_seed(key: str, seed: int) -> int:
    """Stable 63-bit seed from a sample key and a global seed (same on every machine, process and epoch)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
