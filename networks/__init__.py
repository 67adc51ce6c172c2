"""restorelab networks."""
