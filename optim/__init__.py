"""Optimizers usable from configs (``optimizer: {class_path: optim.Ranger, init_args: {lr: 1e-4}}``)."""
from optim.ranger import Ranger

__all__ = ["Ranger"]
