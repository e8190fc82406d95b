"""Where dask computes: one `--scheduler` spec for every command.

`threads` (default) and `processes` are dask's local schedulers; `synchronous` runs in the
calling thread (debugging); `local:N` starts a dask.distributed LocalCluster with N worker
processes; a `tcp://host:port` address connects to a running dask.distributed scheduler.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import dask

__all__ = ["parse_scheduler", "use_scheduler"]

_LOCAL = re.compile(r"^local:(\d+)$")


def parse_scheduler(spec: str) -> tuple[str, int | str | None]:
    """Validate a scheduler spec; return (kind, argument)."""
    if not isinstance(spec, str):
        raise TypeError(f"`scheduler` must be a string, got {type(spec).__name__}")
    s = spec.strip()
    if s in ("threads", "processes", "synchronous"):
        return s, None
    m = _LOCAL.match(s)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise ValueError(f"`scheduler` {spec!r} asks for {n} workers: use local:N with N >= 1")
        return "local", n
    if s.startswith(("tcp://", "tls://", "inproc://")):
        return "address", s
    raise ValueError(
        f"`scheduler` must be 'threads', 'processes', 'synchronous', 'local:N' (N worker "
        f"processes) or a dask.distributed address like 'tcp://127.0.0.1:8786'; got {spec!r}"
    )


@contextlib.contextmanager
def use_scheduler(spec: str = "threads") -> Iterator[str]:
    """Run the body with dask computing on `spec`; yields a description for the user."""
    kind, arg = parse_scheduler(spec)
    if kind in ("threads", "processes", "synchronous"):
        with dask.config.set(scheduler=kind):
            yield kind
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - distributed is in the dev extra
        raise ValueError(
            f"`scheduler` {spec!r} needs dask.distributed: pip install 'revstats[dist]'"
        ) from err
    if kind == "local":
        with LocalCluster(n_workers=int(str(arg)), threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield f"dask.distributed LocalCluster, {arg} workers ({client.scheduler.address})"
    else:
        try:
            client = Client(str(arg), timeout="3s")
        except OSError as err:
            raise ValueError(f"cannot reach the dask scheduler at {arg}: {err}; start one with "
                             f"`dask scheduler` or use --scheduler threads") from err
        with client:
            yield f"dask.distributed scheduler at {arg}"
