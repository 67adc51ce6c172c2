"""Human parsing for ripple removal (seed 004): the Graphonomy CIHP model."""
