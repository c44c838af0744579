"""Where a process's time goes: wall, user and system CPU seconds, page faults and peak RSS.

A memory policy that makes every tensor fault on first touch shows up as system time and minor
faults, not as a slower kernel (issue 24: 22 % of a default run's CPU time was in the kernel). Runs
store these per phase (the analysis ``resources``) and ``snap-bench bench`` prints them per step.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """A snapshot of this process's counters (or of its waited-for children's)."""

    wall: float
    user: float
    sys: float
    minflt: int
    majflt: int

    @classmethod
    def now(cls, who: int = resource.RUSAGE_SELF) -> "Usage":
        r = resource.getrusage(who)
        return cls(time.perf_counter(), r.ru_utime, r.ru_stime, r.ru_minflt, r.ru_majflt)

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(self.wall - other.wall, self.user - other.user, self.sys - other.sys,
                     self.minflt - other.minflt, self.majflt - other.majflt)

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.wall + other.wall, self.user + other.user, self.sys + other.sys,
                     self.minflt + other.minflt, self.majflt + other.majflt)

    def to_json(self) -> dict[str, float]:
        cpu = self.user + self.sys
        return {"wall_s": round(self.wall, 3), "user_s": round(self.user, 3), "sys_s": round(self.sys, 3),
                "sys_share": round(self.sys / cpu, 4) if cpu > 0 else None,
                "minor_faults": self.minflt, "major_faults": self.majflt}


ZERO = Usage(0.0, 0.0, 0.0, 0, 0)


def peak_rss_gb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size of this process (or of its waited-for children), in GB."""
    ru = resource.getrusage(who).ru_maxrss
    return ru * (1 if sys.platform == "darwin" else 1024) / 1e9
