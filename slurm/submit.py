"""Submit a restorelab run to SLURM with the resources filled in.

    python -m slurm.submit fit --config configs/c2f/tiny.yaml --nodes 2 --gpus-per-node 4 --time 24:00:00
    python -m slurm.submit fit --config a.yaml --config b.yaml --gpus-per-node 0 --tasks-per-node 2 \\
        -- --model.init_args.lr=2e-4          # after "--": passed to python -m main unchanged
    python -m slurm.submit test --config configs/c2f/tiny.yaml --dry-run -- --ckpt_path=run/checkpoints/last.ckpt

Builds ``sbatch [resources] slurm/<fit|test>.sbatch --config ... [main args]``: one task per GPU
(``--ntasks-per-node`` = ``--gpus-per-node``; with ``--gpus-per-node 0`` the job runs
``--tasks-per-node`` CPU processes with gloo), then runs it, or prints it with ``--dry-run``.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATES = {"fit": "fit.sbatch", "test": "test.sbatch"}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m slurm.submit``."""
    parser = argparse.ArgumentParser(
        prog="python -m slurm.submit",
        description="Submit `python -m main fit|test` to SLURM via slurm/<subcommand>.sbatch, "
        "one task per device. Arguments after `--` go to python -m main unchanged.",
    )
    parser.add_argument("subcommand", choices=sorted(TEMPLATES), help="main.py subcommand to run")
    parser.add_argument("--config", action="append", required=True, help="config file (repeatable; composes)")
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--gpus-per-node", type=int, default=1, help="GPUs per node; 0 = CPU-only job (default 1)")
    parser.add_argument(
        "--tasks-per-node", type=int, default=None,
        help="processes per node; must equal --gpus-per-node when it is > 0 (default: gpus-per-node, or 1 on CPU)",
    )
    parser.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per process (template default 8)")
    parser.add_argument("--time", default=None, help="time limit, e.g. 24:00:00 (template default)")
    parser.add_argument("--partition", default=None, help="SLURM partition")
    parser.add_argument("--account", default=None, help="SLURM account")
    parser.add_argument("--mem", default=None, help="memory per node, e.g. 64G")
    parser.add_argument("--job-name", default=None, help="job name (default: restorelab-<subcommand>-<config stem>)")
    parser.add_argument("--output-dir", default="slurm_logs", help="where the job's stdout/stderr go (created)")
    parser.add_argument("--sbatch-arg", action="append", default=[], help="extra raw sbatch option (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch command instead of running it")
    return parser


def build_command(options: argparse.Namespace, main_args: list[str]) -> list[str]:
    """The ``sbatch`` command line for ``options`` (from ``build_parser``) and extra main.py arguments.

    Args:
        options: Parsed submit options.
        main_args: Extra arguments for ``python -m main`` (after ``--``).

    Returns:
        The argv of the sbatch call.

    Raises:
        ValueError: Inconsistent resources (tasks per node different from GPUs per node, values < 1).
        FileNotFoundError: A config file that does not exist.
    """
    if options.nodes < 1:
        raise ValueError(f"--nodes must be >= 1, got {options.nodes}")
    if options.gpus_per_node < 0:
        raise ValueError(f"--gpus-per-node must be >= 0, got {options.gpus_per_node}")
    tasks = options.tasks_per_node
    if tasks is None:
        tasks = options.gpus_per_node or 1
    if tasks < 1:
        raise ValueError(f"--tasks-per-node must be >= 1, got {tasks}")
    if options.gpus_per_node and tasks != options.gpus_per_node:
        raise ValueError(
            f"--tasks-per-node={tasks} differs from --gpus-per-node={options.gpus_per_node}: Lightning runs one "
            "process per GPU. Drop --tasks-per-node (it defaults to --gpus-per-node)."
        )
    for config in options.config:
        if not Path(config).is_file():
            raise FileNotFoundError(f"--config {config}: no such file (paths are relative to {Path.cwd()})")
    template = Path(__file__).resolve().parent / TEMPLATES[options.subcommand]
    job_name = options.job_name or f"restorelab-{options.subcommand}-{Path(options.config[-1]).stem}"
    cmd = [
        "sbatch",
        f"--job-name={job_name}",
        f"--nodes={options.nodes}",
        f"--ntasks-per-node={tasks}",
        f"--gpus-per-node={options.gpus_per_node}",
        f"--output={Path(options.output_dir) / '%x-%j.out'}",
    ]
    for flag, value in (
        ("--cpus-per-task", options.cpus_per_task),
        ("--time", options.time),
        ("--partition", options.partition),
        ("--account", options.account),
        ("--mem", options.mem),
    ):
        if value is not None:
            cmd.append(f"{flag}={value}")
    cmd += options.sbatch_arg
    cmd.append(str(template))
    for config in options.config:
        cmd += ["--config", config]
    return cmd + main_args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m slurm.submit``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    main_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, main_args = argv[:split], argv[split + 1 :]
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        cmd = build_command(options, main_args)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    if options.dry_run:
        print(shlex.join(cmd))
        return 0
    if shutil.which("sbatch") is None:
        print("error: sbatch not found; run this on a SLURM login node (or use --dry-run)", file=sys.stderr)
        return 1
    Path(options.output_dir).mkdir(parents=True, exist_ok=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
