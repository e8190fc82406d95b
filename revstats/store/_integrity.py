"""Store integrity beyond per-chunk checksums: the digest manifest, metadata agreement,
completeness and the resume hint (schema 2; see docs/reliability.md).

A chunk's crc32c proves its bytes are intact, not that they belong where they lie: a chunk
copied from another slab (or from the witness) carries a valid checksum. Schema 2 stores
therefore keep a manifest, the `digest` array (run, step, chunk), that records for every chunk
of a completed slab the crc32c it was written with; readers compare the checksum they compute
while reading the chunk (no second read) with the digest recorded for that place. The witness's
digests live in the group attribute `witness_digests`, written in the same metadata update that
marks the witness complete.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from revstats.errors import CorruptStoreError

__all__ = ["Manifest", "metadata_problems", "resume_hint"]

UNSET, EMPTY = -1, -2

#: Expected fill value of each data array: a deleted chunk of a NaN-filled array reads as NaN
#: (and, in a completed slab, is an error), never as a plausible number such as 0.
_FILLS: dict[str, Any] = {"acts": "nan", "witness": "nan", "behavior": "nan", "task": "nan",
                          "complete": False, "digest": UNSET}


def _codec_names(meta: dict[str, Any]) -> list[str]:
    return [str(c.get("name")) for c in meta.get("codecs", []) if isinstance(c, dict)]


def _fill_ok(name: str, fill: Any) -> bool:
    want = _FILLS[name]
    if want == "nan":
        try:
            return isinstance(fill, str) and fill.lower() == "nan" or math.isnan(float(fill))
        except (TypeError, ValueError):
            return False
    return bool(fill == want) and type(fill) is type(want)


def metadata_problems(own: dict[str, dict[str, Any]], consolidated: dict[str, dict[str, Any]] | None,
                      version: int) -> list[str]:
    """Problems with the arrays' metadata documents.

    `own` maps member name -> its own zarr.json (as a dict); `consolidated` the copy of each in
    the root document that readers use (None when there is none). Checks that every data array
    keeps a crc32c codec and its schema fill value, and that the consolidated copy agrees with
    each array's own document (an edit to either would otherwise change what readers see).
    """
    problems: list[str] = []
    for name in ("acts", "witness", "behavior", "task", "complete", "digest"):
        meta = own.get(name)
        if meta is None:
            continue
        if "crc32c" not in _codec_names(meta):
            problems.append(
                f"`{name}`: its codecs {_codec_names(meta)} have no crc32c checksum, so damaged "
                "chunks would read as data; the store was edited or not written by revstats: "
                "restore `zarr.json` of the array from a backup or recreate the store")
        if not _fill_ok(name, meta.get("fill_value")):
            problems.append(
                f"`{name}`: fill value {meta.get('fill_value')!r} is not the schema's "
                f"{_FILLS[name]!r}, so a missing chunk would read as a plausible value; restore "
                "its `zarr.json` from a backup or recreate the store")
    if consolidated is not None:
        for name in sorted(set(own) | set(consolidated)):
            a, b = own.get(name), consolidated.get(name)
            if a is None or b is None:
                where = "its own zarr.json (deleted?)" if a is None else "the consolidated metadata"
                problems.append(f"`{name}`: metadata missing from {where} while the other lists "
                                "it; restore them from a backup or recreate the store")
                continue
            keys = sorted(k for k in set(a) | set(b) if _canon(a.get(k)) != _canon(b.get(k)))
            if keys == ["shape"] and _growth_only(name, a["shape"], b["shape"]):
                # a writer grows `step` in each array's own document first and consolidates
                # after: the consolidated view readers use is the older, consistent one
                continue
            if keys:
                problems.append(
                    f"`{name}`: the consolidated metadata in the root zarr.json disagree with the "
                    f"array's own zarr.json (in {', '.join(keys)}): one was edited; restore it "
                    "from a backup or recreate the store")
    return problems


def _growth_only(name: str, own: Any, cons: Any) -> bool:
    axis = 0 if name == "step" else 1
    try:
        own, cons = list(own), list(cons)
    except TypeError:
        return False
    if len(own) != len(cons) or len(own) <= axis:
        return False
    same = all(o == c for i, (o, c) in enumerate(zip(own, cons, strict=True)) if i != axis)
    return same and own[axis] >= cons[axis]


def _canon(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def resume_hint(provenance: Any) -> str:
    """How to finish an interrupted store: the command recorded in its provenance."""
    cmd = provenance.get("command") if isinstance(provenance, dict) else None
    if isinstance(cmd, str) and cmd.startswith("revstats "):
        return f"resume it by rerunning exactly: {cmd}"
    if isinstance(cmd, str) and cmd:
        return f"resume it by rerunning the writer that made it ({cmd}) with the same settings"
    return "resume it by rerunning the command that wrote it, with the same settings"


@dataclass
class Manifest:
    """The digest manifest and completion state of a schema 2 store (numpy, in memory)."""

    digest: np.ndarray  # (run, step, K) int64
    complete: np.ndarray  # (run, step) bool
    entries: dict[tuple[str, tuple[int, ...]], int]
    finished: bool
    runs: list[str]
    steps: list[int]
    witness: dict[str, int] = field(default_factory=dict)
    witness_done: bool = False

    def problems(self) -> list[str]:
        """Markers without digests, and (in a finished store) digests without markers."""
        out: list[str] = []
        written = (self.digest != UNSET).any(axis=2)
        unset = (self.digest == UNSET).any(axis=2)
        for ri, si in np.argwhere(self.complete & unset)[:5]:
            out.append(f"slab run={self.runs[ri]} step={self.steps[si]}: marked complete but the "
                       "digest manifest has no entry for it (manifest or marker edited); rewrite "
                       "the slab (rerun the writer with --overwrite)")
        if self.finished:
            for ri, si in np.argwhere(written & ~self.complete)[:5]:
                out.append(f"slab run={self.runs[ri]} step={self.steps[si]}: written (the manifest "
                           "records it) but its completion marker vanished, so readers would hide "
                           "it; restore the `complete` array from a backup or rewrite the slab")
        return out

    def missing(self) -> list[tuple[str, int]]:
        """Planned slabs not yet complete (empty for a finished store)."""
        if self.finished:
            return []
        return [(self.runs[r], self.steps[s]) for r, s in np.argwhere(~self.complete)]

    def expected(self, name: str, idx: tuple[int, ...]) -> int | None:
        """Recorded digest of chunk `idx` of array `name`; None when it is not bound."""
        if name == "witness":
            if not self.witness_done:
                return None
            return self.witness.get("/".join(map(str, idx)), UNSET)
        ri, si = int(idx[0]), int(idx[1])
        if ri >= self.complete.shape[0] or si >= self.complete.shape[1] or not self.complete[ri, si]:
            return None
        k = self.entries.get((name, tuple(int(i) for i in idx[2:])))
        if k is None:
            return None
        return int(self.digest[ri, si, k])

    def place(self, name: str, idx: tuple[int, ...]) -> str:
        if name == "witness":
            return f"`witness` chunk {'/'.join(map(str, idx))}"
        ri, si = int(idx[0]), int(idx[1])
        run = self.runs[ri] if ri < len(self.runs) else ri
        step = self.steps[si] if si < len(self.steps) else si
        return f"`{name}` run={run} step={step} chunk {'/'.join(map(str, idx[2:])) or '0'}"

    def check(self, name: str, idx: tuple[int, ...], stored: int | None) -> None:
        """Raise `CorruptStoreError` unless `stored` (the chunk's trailing crc32c, None when no
        object exists) is what the manifest records for this place."""
        want = self.expected(name, idx)
        if want is None:
            return
        where = self.place(name, idx)
        if want == UNSET:
            raise CorruptStoreError(f"{where}: the digest manifest has no entry for this chunk "
                                    "although it is marked complete; rewrite the slab")
        if stored is None or stored == EMPTY:
            if want != EMPTY:
                raise CorruptStoreError(f"{where}: chunk missing although its slab is complete "
                                        "(deleted?); restore it from a backup or rewrite the slab")
            return
        if want == EMPTY:
            raise CorruptStoreError(f"{where}: a chunk exists where the manifest records none (it "
                                    "was added later); remove it or rewrite the slab")
        if stored != want:
            raise CorruptStoreError(f"{where}: the chunk is not the one written at this place (its "
                                    "checksum differs from the manifest's digest: copied from "
                                    "another slab?); restore it from a backup or rewrite the slab")
