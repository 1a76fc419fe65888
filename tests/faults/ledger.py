"""Reads what the fault-test tasks wrote: how many ran, how many were lost or doubled."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Tally:
    started: Counter[str]
    ended: Counter[str]
    first_start: dict[str, float]

    def lost(self, accepted: list[str]) -> list[str]:
        """Accepted messages whose task never finished."""
        return [m for m in accepted if self.ended[m] == 0]

    def doubled(self) -> list[str]:
        """Messages whose task finished more than once (a duplicate execution)."""
        return [m for m, n in self.ended.items() if n > 1]

    def summary(self, accepted: list[str]) -> str:
        return (f"accepted={len(accepted)} ended={sum(1 for m in accepted if self.ended[m])} "
                f"lost={len(self.lost(accepted))} doubled={len(self.doubled())} "
                f"started={sum(self.started.values())}")


def read(path: Path) -> Tally:
    started: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    first: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            event, mid, _n, _pid, at = line.split()
            (started if event == "start" else ended)[mid] += 1
            if event == "start":
                first.setdefault(mid, float(at))
    return Tally(started, ended, first)
