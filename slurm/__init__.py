"""SLURM job templates (``slurm/*.sbatch``) and ``python -m slurm.submit``; see docs/scaling.md."""
