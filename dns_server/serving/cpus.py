"""How many worker processes the machine gives us: the CPUs this container may use.

As Go 1.25 sets GOMAXPROCS (CoreDNS's default for `multisocket`): the `GOMAXPROCS` environment
variable when it is a positive number, else the CPUs of the affinity mask, lowered to the cgroup's
CPU bandwidth limit rounded up (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`).
One difference: Go never goes below 2 for a limit under two CPUs (its scheduler wants a spare
thread); a second worker process under a one-CPU limit only costs memory, so a limit of one CPU
or less gives one worker.  `root` is where `/proc` and `/sys` are read, for tests.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping

V1_CONTROLLERS = ("cpu,cpuacct", "cpuacct,cpu", "cpu")  # where cgroup v1 mounts the cpu controller


def default_workers(environ: Mapping[str, str], root: Path = Path("/"),
                    affinity: Callable[[], int] = lambda: len(os.sched_getaffinity(0))) -> int:
    """The worker count when neither `--workers` nor `multisocket N` sets it."""
    given = environ.get("GOMAXPROCS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    cpus = affinity()
    limit = cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def cpu_limit(root: Path) -> float | None:
    """The CPUs this process's cgroup may use (quota / period), or None when it has no limit."""
    try:
        memberships = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in memberships:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.strip("/")
        if hierarchy == "0" and not controllers:
            found = _read_limit([root / "sys/fs/cgroup" / relative / "cpu.max", root / "sys/fs/cgroup/cpu.max"],
                                _cgroup_v2)
        elif "cpu" in controllers.split(","):
            found = _read_limit([root / "sys/fs/cgroup" / mount / where
                                 for where in (relative, "") for mount in V1_CONTROLLERS], _cgroup_v1)
        else:
            continue
        if found is not None:
            return found
    return None


def _read_limit(candidates: list[Path], parse: Callable[[Path], float | None]) -> float | None:
    """The limit in the first of `candidates` that exists (a container sees its own cgroup at the mount's root)."""
    for candidate in candidates:
        try:
            return parse(candidate)
        except (OSError, ValueError):
            continue
    return None


def _cgroup_v2(path: Path) -> float | None:
    """`cpu.max`: `QUOTA PERIOD`, QUOTA `max` when unlimited."""
    quota, period = path.read_text().split()[:2]
    return None if quota == "max" else int(quota) / int(period)


def _cgroup_v1(directory: Path) -> float | None:
    """`cpu.cfs_quota_us` (-1 when unlimited) over `cpu.cfs_period_us`."""
    quota = int((directory / "cpu.cfs_quota_us").read_text())
    period = int((directory / "cpu.cfs_period_us").read_text())
    return None if quota <= 0 or period <= 0 else quota / period
