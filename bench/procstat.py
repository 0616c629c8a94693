"""CPU time and resident memory of server processes, read from ``/proc`` (Linux only).

CPU is ``utime + stime`` of ``/proc/<pid>/stat`` (clock ticks, usually 10 ms), summed over a process and its
descendants, so a server that forks workers is still counted whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant of it."""
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        if not Path(f"/proc/{current}").exists():
            continue
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                frontier.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds consumed so far by ``pids`` and their descendants."""
    ticks = 0
    for root in pids:
        for pid in descendants(root):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            # The command name may contain spaces; fields after it are fixed. utime, stime are fields 14, 15.
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS_PER_SECOND


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident set size of ``pids`` and their descendants, in bytes."""
    total = 0
    for root in pids:
        for pid in descendants(root):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            except OSError:
                continue
    return total


def find_pid_by_name(name: str) -> int | None:
    """The first process whose ``comm`` is ``name`` (read-only; used to report Redis' own CPU)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    return int(entry.name)
            except OSError:
                continue
    return None


def busy_seconds_per_core() -> list[float]:
    """Busy (non-idle, non-iowait) CPU seconds of each core since boot, from ``/proc/stat``."""
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            cores.append((user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_SECOND)
    return cores
