"""CPU time that includes child processes (the feature build's merchant stage)."""

from __future__ import annotations

import resource
import time


def cpu_seconds() -> float:
    """CPU seconds of this process plus its children that have been waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def rss_mib() -> float:
    """This process' resident set now."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """This process' peak resident set so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
