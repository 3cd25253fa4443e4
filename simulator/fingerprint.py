"""Which build of simreplay computed a result: its version and a hash of what decides results.

The version string alone (``0.1.0``) stays the same while the engine, the step-time model or
a shipped calibration profile changes between commits, so a stored result keyed by it alone
(a sweep's rows, ``sweep/store.py``) could be served after an upgrade that changed it.
``build_id`` adds the first 12 hex digits of a SHA-256 over every Python source of the
package and every shipped calibration profile: any change to them (comments included) is a
new build. It never changes while one installation is left alone, so results stay reusable.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from simulator import __version__


@functools.cache
def build_id() -> str:
    """``<version>+<12 hex digits>``, e.g. ``0.1.0+3f2a9c01b7de``; computed once a process."""
    from simulator.calibration.select import PROFILES_DIR

    return f"{__version__}+{sources_digest(Path(__file__).resolve().parent, PROFILES_DIR)}"


def sources_digest(package: Path, profiles: Path) -> str:
    """12 hex digits of a SHA-256 over ``package``'s ``*.py`` files (at any depth) and the
    ``*.json`` files in ``profiles``, each with its relative name, in name order."""
    files = [(p.relative_to(package).as_posix(), p) for p in package.rglob("*.py")]
    files += [(f"profiles/{p.name}", p) for p in profiles.glob("*.json")]
    digest = hashlib.sha256()
    for name, path in sorted(files):
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:12]
