"""Ripple removal for large HFGI pose edits: parse, ripple mask, composite, ghost metrics (pure torch)."""
