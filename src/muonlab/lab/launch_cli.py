"""The launcher options ``muonlab sweep`` and ``muonlab claims`` share, and the launcher they describe.

``--jobs N`` alone runs N points at a time in local processes; ``--launcher`` picks the engine
(serial, local, ray, slurm); ``--threads`` fixes torch's threads per run; ``--ray-*`` and
``--slurm-*`` options configure their engine and are refused with another launcher.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .launch import LAUNCHERS, Launcher, make_launcher


def add_launcher_arguments(p: argparse.ArgumentParser) -> None:
    """Add the launcher options (``--jobs``, ``--launcher``, ``--threads``, Ray and Slurm options) to ``p``."""
    g = p.add_argument_group("where runs go (resumable under every launcher)")
    g.add_argument("--jobs", type=int, metavar="N",
                   help="runs at a time (default 1); alone it means --launcher local; with ray/slurm a cap "
                        "(default: what the engine schedules)")
    g.add_argument("--launcher", choices=LAUNCHERS,
                   help="serial: in this process (default); local: --jobs processes on this machine (one "
                        "CUDA device each when there are several); ray: Ray tasks; slurm: Slurm jobs (submitit)")
    g.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads per run (default: this process's count, as a serial sweep uses); "
                        "records are bitwise the same under every launcher at the same count")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join (e.g. auto, ray://head:10001; default: a local Ray instance)")
    g.add_argument("--ray-gpus", type=float, metavar="G",
                   help="GPUs declared per run (default: 1 for CUDA runs when the cluster has GPUs, else 0)")
    g.add_argument("--slurm-partition", metavar="P", help="Slurm partition (default: the cluster's)")
    g.add_argument("--slurm-time", metavar="T",
                   help="time limit per run: minutes, H:MM:SS or D-HH:MM:SS (default: the partition's)")
    g.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per run (default 0)")
    g.add_argument("--slurm-mem", metavar="M", help="memory per run: 16G, 512M or GB as a number")
    g.add_argument("--slurm-cluster", choices=("slurm", "local", "debug"),
                   help="slurm (default); local: the same jobs as local processes, to try a sweep first")
    g.add_argument("--slurm-folder", metavar="DIR", help="submitit's logs and pickles (default OUT/.submitit)")


def launcher_from_args(args: argparse.Namespace) -> Launcher:
    """The launcher the command line describes (ValueError naming a bad or misplaced option)."""
    jobs = args.jobs
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs {jobs} must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads} must be >= 1")
    name = args.launcher or ("local" if jobs and jobs > 1 else "serial")
    options = {}
    given = {k for k, v in vars(args).items() if v is not None and k.startswith(("ray_", "slurm_"))}
    wrong = sorted(k for k in given if not k.startswith(name + "_"))
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ValueError(f"{flags} apply to another launcher than --launcher {name}")
    if name == "ray":
        options = {"address": args.ray_address, "gpus": args.ray_gpus}
    elif name == "slurm":
        options = {"partition": args.slurm_partition, "gpus": args.slurm_gpus or 0,
                   "time_min": parse_minutes(args.slurm_time) if args.slurm_time else None,
                   "mem_gb": parse_mem_gb(args.slurm_mem) if args.slurm_mem else None,
                   "cluster": args.slurm_cluster or "slurm",
                   "folder": Path(args.slurm_folder) if args.slurm_folder else None}
    return make_launcher(name, jobs=jobs, threads=args.threads, **options)


def parse_minutes(text: str) -> int:
    """A Slurm time limit in whole minutes: ``90``, ``30:00`` (M:SS), ``1:30:00``, ``2-12``,
    ``2-12:00:00`` (days-hours[:minutes[:seconds]]); seconds round up."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ValueError(f"--slurm-time {text!r} is not minutes, H:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-H[:M[:S]]
        h, mi, se = a, b or 0, c or 0
    elif c is not None:  # H:M:S
        h, mi, se = a, b, c
    else:  # M or M:S
        h, mi, se = 0, a, b or 0
    minutes = (days or 0) * 1440 + h * 60 + mi + (1 if se else 0)
    if minutes < 1:
        raise ValueError(f"--slurm-time {text!r} must be at least one minute")
    return minutes


def parse_mem_gb(text: str) -> float:
    """Memory in GB: ``16G``, ``16GB``, ``512M``, ``1T``, or a plain number of GB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)b?", text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--slurm-mem {text!r} is not a memory size like 16G or 512M")
    return float(m.group(1)) * {"k": 1 / 1024**2, "m": 1 / 1024, "g": 1, "t": 1024, "": 1}[m.group(2)]
