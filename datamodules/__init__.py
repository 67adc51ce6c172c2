"""restorelab datamodules."""
