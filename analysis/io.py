"""Atomic output: every file appears whole or not at all (temp file in the same dir, rename)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "replace_dir", "results_to_json",
           "umask_mode", "write_results"]


def umask_mode(mode: int = 0o666) -> int:
    """`mode` under the process umask (what a plain ``open(path, "w")`` would create)."""
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, umask_mode())  # mkstemp makes 0600; the file gets what open() would give
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def results_to_json(results: dict[str, Any]) -> str:
    """Strict JSON (NaN is refused: the pipeline already writes null for undefined numbers)."""
    return json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_results(results: dict[str, Any], path: str | os.PathLike) -> Path:
    return atomic_write_text(path, results_to_json(results))


def replace_dir(staging: Path, target: Path) -> None:
    """Move a fully written staging directory onto `target`, replacing its report files.

    Files in `target` that the report does not own are left alone; the report's own files are
    each replaced by rename, so a reader never sees a half-written file.
    """
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.rglob("*")):
        rel = item.relative_to(staging)
        dest = target / rel
        if item.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            os.replace(item, dest)
    shutil.rmtree(staging, ignore_errors=True)
