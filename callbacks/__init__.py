"""restorelab callbacks."""
