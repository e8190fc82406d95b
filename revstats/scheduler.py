"""Where dask computes: the one `--scheduler` spec every heavy command understands.

==========================  ==============================================================
spec                        meaning
==========================  ==============================================================
``threads`` (default)       dask's threaded scheduler in this process, ``max(4, cores)``
                            threads (chunk reads release the GIL: extra threads keep the
                            disk busy while others compute)
``threads:N``               the same with N threads
``processes``               dask's multiprocessing scheduler
``synchronous`` / ``sync``  the calling thread (debugging, profiling)
``local:N``                 a dask.distributed ``LocalCluster`` of N single-threaded worker
                            processes on loopback (127.0.0.1), started and stopped here
``tcp://host:port``         a running dask.distributed scheduler (``tls://`` too), e.g.
                            started with ``dask scheduler`` + ``dask worker tcp://...``
==========================  ==============================================================

dask.distributed is imported only for the last two, so the core stays light. Lazy analyses
built with xarray/dask run unchanged on any of them: the spec only decides where ``compute``
runs (see ``docs/scaling.md``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import dask

__all__ = ["default_threads", "parse_scheduler", "use_scheduler"]

_LOCAL = re.compile(r"^local:(\d+)$")
_THREADS = re.compile(r"^threads:(\d+)$")
_ALIASES = {"threads": "threads", "threaded": "threads", "processes": "processes",
            "synchronous": "synchronous", "sync": "synchronous", "single-threaded": "synchronous"}
_ADDRESS_PREFIXES = ("tcp://", "tls://", "inproc://", "ucx://")


def parse_scheduler(spec: Any) -> tuple[str, int | str | None]:
    """Validate a scheduler spec and return ``(kind, argument)``.

    ``kind`` is one of "threads" (argument: the number of threads, None for the default),
    "processes", "synchronous" (argument None), "local" (argument: the number of workers) or
    "address" (argument: the scheduler address).

    Examples
    --------
    >>> parse_scheduler("local:2")
    ('local', 2)
    >>> parse_scheduler("tcp://10.0.0.5:8786")
    ('address', 'tcp://10.0.0.5:8786')
    """
    if not isinstance(spec, str):
        raise TypeError(f"`scheduler` must be a string, got {type(spec).__name__}")
    s = spec.strip()
    if s.lower() in _ALIASES:
        return _ALIASES[s.lower()], None
    m = _THREADS.match(s)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise ValueError(f"`scheduler` {spec!r} asks for {n} threads: use threads:N with N >= 1")
        return "threads", n
    m = _LOCAL.match(s)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise ValueError(f"`scheduler` {spec!r} asks for {n} workers: use local:N with N >= 1")
        return "local", n
    if s.startswith(_ADDRESS_PREFIXES) and len(s) > s.index("://") + 3:
        return "address", s
    raise ValueError(
        f"`scheduler` must be 'threads', 'threads:N', 'processes', 'synchronous', 'local:N' (N worker "
        f"processes) or a dask.distributed address like 'tcp://127.0.0.1:8786'; got {spec!r}"
    )


def default_threads() -> int:
    """Threads of the default ``threads`` scheduler: ``max(4, cores)``.

    Scans of a store alternate between reading a chunk (GIL released, waiting on the disk)
    and reducing it; with only one thread per core the disk idles while every thread
    computes. Measured on 2 cores (docs/scaling.md): 2 threads scanned at ~0.5x the raw read
    speed, 4 threads at ~0.9x.
    """
    return max(4, os.cpu_count() or 1)


def _import_distributed(spec: str) -> Any:
    try:
        import distributed
    except ImportError as err:  # pragma: no cover - distributed is in the dist/dev extras
        raise ValueError(
            f"`scheduler` {spec!r} needs dask.distributed: pip install 'revstats[dist]'"
        ) from err
    return distributed


@contextlib.contextmanager
def use_scheduler(spec: str = "threads", *, connect_timeout: str = "5s") -> Iterator[str]:
    """Run the body with dask computing on `spec`; yields a one-line description.

    Parameters
    ----------
    spec : str
        See the module docstring: "threads", "processes", "synchronous", "local:N",
        "tcp://host:port".
    connect_timeout : str
        How long to wait for a remote scheduler before giving up (dask time string).

    Raises
    ------
    ValueError
        For a malformed spec, or a scheduler address nobody answers at (the message says how
        to start one).

    Examples
    --------
    >>> import dask.array as da
    >>> with use_scheduler("synchronous"):
    ...     int(da.ones(10, chunks=5).sum().compute())
    10
    """
    kind, arg = parse_scheduler(spec)
    if kind == "threads":
        n = int(arg) if arg is not None else default_threads()
        with dask.config.set(scheduler="threads", num_workers=n):
            yield "threads"
        return
    if kind in ("processes", "synchronous"):
        with dask.config.set(scheduler=kind):
            yield kind
        return
    distributed = _import_distributed(spec)
    if kind == "local":
        # Loopback only: a LocalCluster is for this machine, never listening on the network.
        with distributed.LocalCluster(
            n_workers=int(arg or 1), threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:
            yield f"dask.distributed LocalCluster, {arg} workers ({client.scheduler.address})"
        return
    try:
        client = distributed.Client(str(arg), timeout=connect_timeout)
    except (OSError, TimeoutError) as err:
        raise ValueError(
            f"cannot reach the dask scheduler at {arg}: {err}; start one with `dask scheduler` "
            "and `dask worker <address>` (see docs/scaling.md), or use --scheduler threads"
        ) from err
    with client:
        n = len(client.scheduler_info().get("workers", {}))
        yield f"dask.distributed scheduler at {arg} ({n} workers)"
