"""Pieces of the command line that main.py wires into LightningCLI (kept out of main.py so each is one concept)."""
