"""Progress lines: durations and ETAs that read the same in every command."""

from __future__ import annotations


def fmt_duration(seconds: float) -> str:
    """h:mm:ss."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def eta(elapsed: float, done: float, total: float) -> str:
    """Time left at the rate so far, or "--" before anything is done."""
    if done <= 0 or elapsed <= 0:
        return "--"
    return fmt_duration(elapsed / done * max(total - done, 0))
