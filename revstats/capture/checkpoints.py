"""Hugging Face checkpoints and probe prompts: discovery, manifests, loading (incl. LoRA), fingerprints.

A fine-tuning experiment is a witness (pre-alignment) model, an aligned model (step 0) and, per
run, Trainer ``checkpoint-N`` folders (full models or PEFT adapters). They are found by a glob
(:func:`discover_checkpoints`) or listed in a manifest (:func:`read_manifest`, JSON or TOML; format
in docs/capture.md). Models are loaded one at a time by :func:`load_causal_lm`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revstats.errors import RevstatsError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "CheckpointSpec",
    "Manifest",
    "ProbeSet",
    "discover_checkpoints",
    "file_sha256",
    "is_adapter_dir",
    "load_causal_lm",
    "load_probes",
    "load_tokenizer",
    "model_fingerprint",
    "read_manifest",
    "torch_dtype",
]

_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
_SEED_RE = re.compile(r"seed[-_=]?(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class CheckpointSpec:
    """One fine-tuning checkpoint: run id, training step, local directory, optional arm and seed."""

    run: str
    step: int
    path: str
    arm: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Manifest:
    """Checkpoints of several runs, plus optional witness/aligned/adapter-base paths."""

    checkpoints: tuple[CheckpointSpec, ...]
    witness: str | None = None
    aligned: str | None = None
    adapter_base: str | None = None

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(c.run for c in self.checkpoints))

    @property
    def steps(self) -> list[int]:
        return sorted({c.step for c in self.checkpoints})

    def run_attr(self, name: str) -> list[Any] | None:
        """Per-run arm or seed, or None when no checkpoint gives one."""
        values = {c.run: getattr(c, name) for c in self.checkpoints}
        if all(v is None for v in values.values()):
            return None
        return [values[r] for r in self.runs]


# --------------------------------------------------------------------------- discovery
def discover_checkpoints(patterns: str | Sequence[str]) -> Manifest:
    """Find Trainer ``checkpoint-N`` folders by glob.

    Each pattern may match run directories (holding ``checkpoint-N`` subfolders) or checkpoint
    folders themselves. The run id is the run directory's name (its path relative to the common
    parent when names collide); the step is N. A seed is parsed from run names like ``seed3``
    when every run has one.
    """
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    if not pats:
        raise ValueError("`patterns` is empty: pass a glob such as 'runs/*'")
    found: dict[Path, dict[int, Path]] = {}
    for pat in pats:
        for hit in sorted(glob.glob(os.path.expanduser(pat))):
            p = Path(hit)
            if not p.is_dir():
                continue
            m = _CKPT_RE.match(p.name)
            if m:
                found.setdefault(p.parent.resolve(), {})[int(m.group(1))] = p
                continue
            for sub in sorted(p.iterdir()):
                m = _CKPT_RE.match(sub.name)
                if m and sub.is_dir():
                    found.setdefault(p.resolve(), {})[int(m.group(1))] = sub
    if not found:
        raise RevstatsError(
            f"`runs` pattern(s) {pats} matched no run directory with checkpoint-N folders: point "
            "the glob at the Trainer output dirs (e.g. 'runs/*') or use a manifest"
        )
    run_dirs = sorted(found)
    names = [d.name for d in run_dirs]
    if len(set(names)) != len(names):
        common = Path(os.path.commonpath([str(d) for d in run_dirs]))
        names = [str(d.relative_to(common)) for d in run_dirs]
    seeds = [_SEED_RE.search(n) for n in names]
    use_seeds = all(seeds)
    specs = []
    for name, d, sm in zip(names, run_dirs, seeds, strict=True):
        for step in sorted(found[d]):
            if step <= 0:
                raise RevstatsError(
                    f"{found[d][step]}: step 0 is reserved for the aligned model; Trainer "
                    "checkpoints start at step >= 1"
                )
            specs.append(CheckpointSpec(run=name, step=step, path=str(found[d][step]),
                                        seed=int(sm.group(1)) if use_seeds and sm else None))
    return Manifest(tuple(specs))


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read a JSON or TOML manifest listing checkpoints (run, arm, seed, step, path) per entry.

    Relative paths are resolved against the manifest's directory; a missing ``step`` is parsed
    from a ``checkpoint-N`` path.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`manifest` {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise RevstatsError(f"manifest {p}: cannot parse ({exc}); write JSON or TOML") from exc
    entries = data.get("checkpoints", data.get("checkpoint"))
    if not isinstance(entries, list) or not entries:
        raise RevstatsError(
            f"manifest {p}: needs a non-empty list `checkpoints` (JSON) or `[[checkpoint]]` "
            "tables (TOML) with run, path and optionally step, arm, seed"
        )

    def resolve(value: str | None) -> str | None:
        if value is None:
            return None
        q = Path(os.path.expanduser(value))
        return str(q if q.is_absolute() else (p.parent / q))

    specs: list[CheckpointSpec] = []
    per_run: dict[str, tuple[Any, Any]] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "run" not in e or "path" not in e:
            raise RevstatsError(f"manifest {p}: checkpoint entry {i} needs `run` and `path`")
        cpath = resolve(str(e["path"]))
        assert cpath is not None
        step = e.get("step")
        if step is None:
            m = _CKPT_RE.match(Path(cpath).name)
            if not m:
                raise RevstatsError(
                    f"manifest {p}: entry {i} has no `step` and its path is not checkpoint-N"
                )
            step = int(m.group(1))
        if int(step) <= 0:
            raise RevstatsError(f"manifest {p}: entry {i} has step {step}; step 0 is the aligned "
                                "model, checkpoints need step >= 1")
        run = str(e["run"])
        arm = None if e.get("arm") is None else str(e["arm"])
        seed = None if e.get("seed") is None else int(e["seed"])
        if per_run.setdefault(run, (arm, seed)) != (arm, seed):
            raise RevstatsError(f"manifest {p}: run {run!r} has different arm/seed across entries")
        specs.append(CheckpointSpec(run, int(step), cpath, arm, seed))
    keys = [(s.run, s.step) for s in specs]
    if len(set(keys)) != len(keys):
        raise RevstatsError(f"manifest {p}: a (run, step) pair is listed twice")
    return Manifest(tuple(specs), witness=resolve(data.get("witness")),
                    aligned=resolve(data.get("aligned")), adapter_base=resolve(data.get("adapter_base")))


# --------------------------------------------------------------------------- fingerprints
def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def model_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Path, config hashes and revision (hub snapshot commit or `_commit_hash`) of a model dir."""
    p = Path(path)
    info: dict[str, Any] = {"path": str(p.resolve())}
    for name in ("config.json", "adapter_config.json", "generation_config.json"):
        if (p / name).is_file():
            info[name.replace(".json", "_sha256")] = file_sha256(p / name)
    if (p / "adapter_config.json").is_file():
        cfg = json.loads((p / "adapter_config.json").read_text())
        info["adapter_base"] = cfg.get("base_model_name_or_path")
        info["adapter_revision"] = cfg.get("revision")
    if (p / "config.json").is_file():
        cfg = json.loads((p / "config.json").read_text())
        for key in ("_commit_hash", "transformers_version", "model_type", "_name_or_path"):
            if cfg.get(key) is not None:
                info[key.lstrip("_")] = cfg[key]
    parts = p.resolve().parts
    if "snapshots" in parts[:-1]:  # a hub cache snapshot dir is named by its commit
        info["revision"] = parts[parts.index("snapshots") + 1]
    return info


# --------------------------------------------------------------------------- loading
def torch_dtype(name: str):
    import torch

    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise ValueError(f"`dtype` must be one of {sorted(table)}, got {name!r}")
    return table[name]


def load_causal_lm(
    path: str | os.PathLike,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    adapter_base: str | os.PathLike | None = None,
):
    """Load a local causal LM (``AutoModelForCausalLM``) in eval mode on `device`.

    A PEFT adapter directory (``adapter_config.json``) is applied to its base -- `adapter_base`
    if given, else the adapter config's ``base_model_name_or_path`` when that is a local dir --
    and merged (``merge_and_unload``), so its residual stream is the merged model's.
    """
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"model directory {str(p)!r} does not exist")
    tdtype = torch_dtype(dtype)
    try:
        from safetensors import SafetensorError
        load_errors: tuple[type[BaseException], ...] = (ValueError, OSError, SafetensorError)
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        load_errors = (ValueError, OSError)
    try:
        model = _from_pretrained(p, tdtype, adapter_base)
    except pickle.UnpicklingError as exc:
        # transformers/peft read *.bin with torch.load(weights_only=True): a file that needs
        # more than tensors is refused there; say so plainly (never retry without weights_only)
        raise RevstatsError(
            f"{p}: refused to load a pickle checkpoint that holds more than tensors (unpickling "
            "it could run arbitrary code); convert the checkpoint to safetensors "
            f"(save_pretrained(..., safe_serialization=True)) ({type(exc).__name__})"
        ) from None
    except RevstatsError:
        raise
    except load_errors as exc:
        if "trust_remote_code" in str(exc):
            raise RevstatsError(
                f"{p}: this model needs Python code shipped with it (`trust_remote_code`), which "
                "would run with your permissions; revstats never enables that. Use a model whose "
                "architecture transformers has built in, or load it yourself after reviewing its "
                "code and capture with revstats.capture.capture_residual") from None
        raise RevstatsError(f"{p}: cannot load the model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}); check that "
                            "its files are complete (a truncated model.safetensors?)") from None
    except RuntimeError as exc:  # e.g. an adapter made for a different width
        raise RevstatsError(f"{p}: the weights do not fit the model they are loaded into "
                            f"({str(exc).splitlines()[0][:300]}); an adapter must be applied to "
                            "the base it was trained on (see --adapter-base)") from None
    return model.to(device).eval()


_WEIGHTS_DIGESTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def _weights_digest(d: Path) -> str:
    """sha256 over a model directory's weight files (cached by name, size and mtime)."""
    files = sorted(f for f in d.iterdir() if f.suffix in (".safetensors", ".bin", ".pt", ".pth")
                   and f.is_file())
    key = (str(d.resolve()), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _WEIGHTS_DIGESTS:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            h.update(file_sha256(f).encode())
        _WEIGHTS_DIGESTS[key] = h.hexdigest()
    return _WEIGHTS_DIGESTS[key]


def _arch(d: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    keys = ("model_type", "hidden_size", "n_embd", "num_hidden_layers", "n_layer", "vocab_size")
    return {k: cfg[k] for k in keys if k in cfg}


def _check_adapter_base(adapter: Path, base: Path) -> None:
    """Refuse to apply an adapter to a base other than the one its config names, when that
    base is a local model with other weights or another architecture (else an unrelated
    network would be captured without a word)."""
    try:
        claimed = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return
    if not claimed or not Path(claimed).is_dir():
        return  # a hub id (or nothing): the base cannot be compared; width is checked on load
    claimed_p = Path(claimed)
    if claimed_p.resolve() == base.resolve():
        return
    if _arch(claimed_p) != _arch(base):
        raise RevstatsError(
            f"{adapter}: the adapter was trained on {claimed} ({_arch(claimed_p)}) but would be "
            f"applied to {base} ({_arch(base)}), another architecture: pass `--adapter-base "
            f"{claimed}` or fix `base_model_name_or_path` in its adapter_config.json")
    if _weights_digest(claimed_p) != _weights_digest(base):
        raise RevstatsError(
            f"{adapter}: the adapter names {claimed} as its base, but it would be applied to "
            f"{base}, whose weights differ: the captured network would not be the fine-tuned "
            f"one; pass `--adapter-base {claimed}` (or copy the right base there)")


def _from_pretrained(p: Path, tdtype, adapter_base):
    from transformers import AutoModelForCausalLM

    if is_adapter_dir(p):
        from peft import PeftModel

        base_path = adapter_base
        if base_path is None:
            cfg = json.loads((p / "adapter_config.json").read_text())
            cand = cfg.get("base_model_name_or_path")
            if cand and Path(cand).is_dir():
                base_path = cand
        if base_path is None or not Path(base_path).is_dir():
            raise RevstatsError(
                f"{p} is a PEFT adapter but its base model is not a local directory: pass "
                "`--adapter-base PATH` (usually the aligned model)"
            )
        _check_adapter_base(p, Path(base_path))
        base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=tdtype, trust_remote_code=False)
        model = PeftModel.from_pretrained(base, str(p)).merge_and_unload()
    else:
        if not (p / "config.json").is_file():
            raise RevstatsError(f"{p} has neither config.json nor adapter_config.json: not a "
                                "Hugging Face model or adapter directory")
        model = AutoModelForCausalLM.from_pretrained(str(p), dtype=tdtype, trust_remote_code=False)
    return model


def load_tokenizer(path: str | os.PathLike):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise RevstatsError(
            f"no tokenizer in {path}: save one beside the model or pass `--tokenizer DIR` "
            f"({exc})"
        ) from exc


# --------------------------------------------------------------------------- probes
@dataclass(frozen=True)
class ProbeSet:
    """Tokenised probes: ids, prompt token ids, response token ids (maybe empty), file hash."""

    ids: list[str]
    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    sha256: str
    chat_template: bool = False
    source: str = ""
    texts: list[str] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.ids)


def _read_utf8(p: Path) -> str:
    """The file as text; a UTF-8 byte-order mark is accepted, other bytes named by line."""
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RevstatsError(
            f"{p}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {col}); save the "
            "probe file as UTF-8") from None


def _token_ids(value: Any, p: Path, i: int, key: str) -> list[int]:
    if not isinstance(value, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise RevstatsError(f"{p}: probe {i}: `{key}` must be a list of integer token ids, got "
                            f"{str(value)[:60]}")
    return list(value)


def load_probes(path: str | os.PathLike, *, tokenizer=None, chat_template: bool = False) -> ProbeSet:
    """Read probes from JSONL or plain text and tokenise them.

    JSONL lines hold ``id`` (optional), and ``prompt`` (str) or ``prompt_ids`` (token ids), and
    optionally ``response`` / ``response_ids``. A text file holds one prompt per non-empty line.
    With `chat_template`, each prompt becomes a user turn rendered by the tokenizer's chat
    template with the generation prompt; responses are tokenised without special tokens.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`probes` file {str(p)!r} does not exist")
    rows: list[dict[str, Any]] = []
    text = _read_utf8(p)
    if p.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RevstatsError(f"{p}:{n}: not JSON ({exc})") from None
                except RecursionError:
                    raise RevstatsError(f"{p}:{n}: JSON nested too deeply; each line must be a "
                                        "flat object such as {\"id\": \"q1\", \"prompt\": \"...\"}") from None
                if not isinstance(row, dict):
                    raise RevstatsError(
                        f"{p}:{n}: each line must be a JSON object with `prompt` or `prompt_ids`, "
                        f"got a JSON {type(row).__name__}")
                rows.append(row)
    else:
        rows = [{"prompt": line} for line in text.splitlines() if line.strip()]
    if not rows:
        raise RevstatsError(f"`probes` file {p} holds no probes")
    ids, prompts, responses, texts = [], [], [], []
    for i, row in enumerate(rows):
        ids.append(str(row.get("id", f"p{i:05d}")))
        if "prompt_ids" in row:
            prompts.append(_token_ids(row["prompt_ids"], p, i, "prompt_ids"))
            responses.append(_token_ids(row.get("response_ids", []), p, i, "response_ids"))
            texts.append("")
            continue
        if "prompt" not in row:
            raise RevstatsError(f"{p}: probe {i} needs `prompt` or `prompt_ids`")
        if tokenizer is None:
            raise RevstatsError(f"{p}: text prompts need a tokenizer (save one beside the model)")
        text = str(row["prompt"])
        if chat_template:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            prompts.append(list(tokenizer(rendered, add_special_tokens=False)["input_ids"]))
        else:
            prompts.append(list(tokenizer(text)["input_ids"]))
        resp = row.get("response")
        responses.append(list(tokenizer(str(resp), add_special_tokens=False)["input_ids"])
                         if resp else [])
        texts.append(text)
    if len(set(ids)) != len(ids):
        raise RevstatsError(f"{p}: probe ids are not unique")
    empty = [ids[i] for i, pr in enumerate(prompts) if not pr]
    if empty:
        raise RevstatsError(f"{p}: probes {empty[:5]} tokenise to nothing")
    return ProbeSet(ids, prompts, responses, file_sha256(p), chat_template, str(p.resolve()), texts)
