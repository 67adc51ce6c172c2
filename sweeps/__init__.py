"""W&B sweep definitions (``sweeps/*.yaml``) and their offline checker ``python -m sweeps.check``."""
