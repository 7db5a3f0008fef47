"""CPU time of the benchmarks' processes, from Linux's /proc (proc(5): /proc/PID/stat fields 14 and 15, utime and
stime, in clock ticks)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far; 0.0 if it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(command: str) -> float:
    """CPU time so far of every process whose name (/proc/PID/comm) is `command`, summed: all of a PostgreSQL
    server's backends, for instance, whoever they serve."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if name == command:
            total += cpu_seconds(int(entry.name))
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time so far of a process and of every process under it (a server and the processes it started), from
    /proc/PID/task/TID/children; a process that has gone counts 0.0."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu_seconds(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except (FileNotFoundError, ProcessLookupError):
                continue
    return total
