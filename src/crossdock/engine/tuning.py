"""Process tuning for the hub's long-running processes: the worker, `crossdock sync` and `crossdock serve`.

A pull decodes and maps tens of thousands of small objects per page, and each page's objects die together once
the page is stored. With CPython's default thresholds (700, 10, 10) the cyclic garbage collector runs hundreds
of times per page and keeps walking everything the process loaded at start-up: about a third of a backfill's
CPU (BENCHMARKS.md, "Backfill"). Once started, the objects that live as long as the process (modules, classes,
the job registry, compiled SQL) are moved out of the collector's sight with gc.freeze(), and the youngest
generation is collected every 10,000 net allocations instead of every 700: a few collections per page, each
over young objects only.

Not higher: reference counting frees most of a page at once, but not what sits in a reference cycle, and an
httpx response is one (with its stream) that holds the page's body until a collection. At 50,000 the
collector ran about once per hundred pages, and a process fetching 100,000 orders peaked at 435 MB instead of
181 to 188 MB. The older generations keep CPython's ratios (10, 10), so whatever survives a young collection
is still looked at again soon.
"""

from __future__ import annotations

import gc

# (youngest generation's allocations, younger collections per middle one, middle per oldest).
GC_THRESHOLDS = (10_000, 10, 10)

_tuned = False


def tune_long_running_process() -> None:
    """Call once start-up is done (modules imported, job kinds registered). Later calls do nothing, so one
    process that runs a worker more than once (a test run) is frozen only once."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()  # start-up's own garbage is freed now, not frozen for the life of the process
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
