"""The default number of workers from fake /proc and /sys trees: GOMAXPROCS, cgroup v2 and v1 limits, affinity."""

from __future__ import annotations

from pathlib import Path

import pytest

from dns_server.serving.cpus import cpu_limit, default_workers


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


V2 = {"proc/self/cgroup": "0::/kubepods/pod1/ctr\n"}
V1 = {"proc/self/cgroup": "4:memory:/kubepods/pod1\n2:cpu,cpuacct:/kubepods/pod1\n1:cpuset:/kubepods/pod1\n"}


@pytest.mark.parametrize("files, limit", [
    ({**V2, "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "250000 100000\n"}, 2.5),
    ({**V2, "sys/fs/cgroup/cpu.max": "150000 100000\n"}, 1.5),  # the container sees its own cgroup at the root
    ({**V2, "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n"}, None),
    ({**V1, "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us": "300000\n",
      "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us": "100000\n"}, 3.0),
    ({**V1, "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({**V1, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
      "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    (V2, None),  # no limit file at all
    ({}, None),  # no /proc
    ({**V2, "sys/fs/cgroup/cpu.max": "garbage\n"}, None),
])
def test_the_cgroup_cpu_limit(files: dict[str, str], limit: float | None, tmp_path: Path) -> None:
    assert cpu_limit(tree(tmp_path, files)) == limit


@pytest.mark.parametrize("cpu_max, affinity, workers", [
    ("250000 100000", 8, 3),  # 2.5 CPUs round up, as Go's GOMAXPROCS
    ("250000 100000", 2, 2),  # never more than the CPUs we may run on
    ("100000 100000", 8, 1),  # one CPU: one worker
    ("50000 100000", 8, 1),  # half a CPU: one worker (Go would take 2)
    ("max 100000", 4, 4),
])
def test_workers_follow_the_limit_and_the_affinity(cpu_max: str, affinity: int, workers: int, tmp_path: Path) -> None:
    root = tree(tmp_path, {**V2, "sys/fs/cgroup/cpu.max": cpu_max})
    assert default_workers({}, root, lambda: affinity) == workers


@pytest.mark.parametrize("value, workers", [("3", 3), ("0", 8), ("lots", 8), ("", 8)])
def test_gomaxprocs_when_a_positive_number_wins(value: str, workers: int, tmp_path: Path) -> None:
    assert default_workers({"GOMAXPROCS": value}, tmp_path, lambda: 8) == workers
