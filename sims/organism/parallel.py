"""Run independent organism jobs (one seed each) in worker processes, results in job order.

Each job is a top-level function called with keyword arguments; it reports progress through
:func:`tick` (a no-op in the parent, a queue to the parent in a worker). Workers are started
with the ``spawn`` method (a fork after torch has started its thread pools can hang) and run
one torch thread each (:func:`revstats.sims.organism.train.deterministic` sets it per job), so a job
computes the same numbers in a worker as in the parent: stores written from the results are
identical to the serial run's (tested).
"""

from __future__ import annotations

import os
import queue as _queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["default_workers", "map_jobs", "tick"]

_QUEUE: Any = None
_LOCAL_TICK: Callable[[str, int], None] | None = None


def tick(description: str, n: int = 1) -> None:
    """Report ``n`` progress units from inside a job (worker or parent)."""
    if _QUEUE is not None:
        _QUEUE.put((description, n))
    elif _LOCAL_TICK is not None:
        _LOCAL_TICK(description, n)


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to this worker when its parent dies (a killed
    ``revstats organism`` leaves no orphaned training processes). Best effort elsewhere."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - no libc
            pass


def _init_worker(q: Any) -> None:
    global _QUEUE
    _QUEUE = q
    _die_with_parent()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def default_workers(n_jobs: int) -> int:
    """Processes to use when none are asked for: one per core (as far as this process may
    use them), never more than jobs."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_jobs))


def _validate_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be a positive integer (processes), got {workers!r}")
    return workers


def map_jobs(fn: Callable[..., Any], jobs: Sequence[dict[str, Any]], *, workers: int = 1,
             progress: Callable[[str, int], None] | None = None) -> Iterator[Any]:
    """Yield ``fn(**job)`` for every job, in job order.

    ``workers=1`` runs the jobs in this process, one after the other (the serial reference);
    more start that many ``spawn`` worker processes (at most one per job). Progress units that
    jobs report with :func:`tick` reach ``progress(description, n)`` in this process.
    """
    global _LOCAL_TICK
    workers = min(_validate_workers(workers), max(1, len(jobs)))
    if workers == 1:
        previous, _LOCAL_TICK = _LOCAL_TICK, progress
        try:
            for job in jobs:
                yield fn(**job)
        finally:
            _LOCAL_TICK = previous
        return

    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set() or not q.empty():
            try:
                desc, n = q.get(timeout=0.1)
            except (_queue.Empty, EOFError, OSError):
                continue
            if progress is not None:
                progress(desc, n)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(q,)) as pool:
            futures = [pool.submit(fn, **job) for job in jobs]
            try:
                for fut in futures:
                    yield fut.result()
            except BrokenProcessPool as e:
                for fut in futures:
                    fut.cancel()
                raise RuntimeError(
                    "an organism worker process died. If you called this from a script, put "
                    "the call under `if __name__ == \"__main__\":` (workers are started with "
                    "the spawn method, which re-imports the main module); otherwise rerun with "
                    "`workers=1` to see the error in this process") from e
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        stop.set()
        reader.join(timeout=5)
        q.close()
