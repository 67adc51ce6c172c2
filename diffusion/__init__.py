"""restorelab diffusion."""
