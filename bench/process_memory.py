"""Resident memory of the processes a benchmark starts, read from /proc: every report's RSS figures."""

from __future__ import annotations

from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, as /proc lists them now."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # ended meanwhile
        children = []
    return [pid, *(descendant for child in children for descendant in process_tree(int(child)))]


def _status_mb(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:  # ended meanwhile
        pass
    return None


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes now, summed (VmRSS); one that has ended counts nothing."""
    return sum(_status_mb(pid, "VmRSS") or 0.0 for pid in pids)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has ever held (NaN where /proc has no figure)."""
    peak = _status_mb(pid, "VmHWM")
    return float("nan") if peak is None else peak
