"""restorelab lightning_modules."""
