"""The integrity manifest of a model folder: the SHA-256 and size of every file, written at
registration and checked before anything loads a downloaded copy.

The manifest is a file of the folder (`MANIFEST.sha256.json`, canonical JSON); the registry keeps
the SHA-256 of the manifest itself with the version, so rewriting files and manifest together is
caught too. Pure functions over a local folder: the registry adapter turns problems into errors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "MANIFEST.sha256.json"
TAG = "manifest_sha256"  # the version tag (and training-run param) holding the digest
VERSION = "1"


def _entries(folder: Path) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """{relative POSIX path: (size, sha256)} of every regular file except the manifest, and the
    links found (never followed: a link could point anywhere on the loading machine)."""
    files: dict[str, tuple[int, str]] = {}
    links: list[str] = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            links.append(name)
        elif path.is_file() and name != MANIFEST:
            with open(path, "rb") as fh:
                files[name] = (path.stat().st_size, hashlib.file_digest(fh, "sha256").hexdigest())
    return files, links


def canonical(files: dict[str, tuple[int, str]]) -> bytes:
    body = {"v": VERSION, "files": [[name, size, sha] for name, (size, sha) in sorted(files.items())]}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(folder: Path) -> str:
    """Write the folder's manifest; returns its SHA-256 (what the registry stores)."""
    files, links = _entries(folder)
    if links:
        raise ValueError(f"model folder holds links, which a manifest cannot vouch for: {links}")
    data = canonical(files)
    (folder / MANIFEST).write_bytes(data)
    return digest(data)


def problems(folder: Path, expected: str) -> list[str]:
    """What differs between a downloaded folder and its registered manifest digest: a missing or
    replaced manifest, files changed, missing or added (each named); empty when intact."""
    manifest = folder / MANIFEST
    if manifest.is_symlink() or not manifest.is_file():
        return [f"{MANIFEST} is missing"]
    data = manifest.read_bytes()
    if digest(data) != expected:
        return [f"{MANIFEST} was replaced (SHA-256 {digest(data)[:12]}…, registered "
                f"{expected[:12]}…)"]
    try:
        listed = {name: (size, sha) for name, size, sha in json.loads(data)["files"]}
    except (ValueError, KeyError, TypeError):
        return [f"{MANIFEST} is unreadable"]
    found, links = _entries(folder)
    out = [f"{name} is a link" for name in links]
    for name in sorted(listed.keys() | found.keys()):
        if name not in found:
            out.append(f"{name} is missing" if name not in links else "")
        elif name not in listed:
            out.append(f"{name} was added")
        elif found[name] != listed[name]:
            out.append(f"{name} was changed (SHA-256 {found[name][1][:12]}…, registered "
                       f"{listed[name][1][:12]}…)")
    return [p for p in out if p]



def failure(label: str, folder: Path, expected: str | None) -> str | None:
    """Why a downloaded version must not be loaded, as one line naming the files; None when it
    is intact, or registered before manifests (no digest, and no manifest in the folder)."""
    if expected is None:
        return None if not (folder / MANIFEST).exists() else (
            f"{label} holds a manifest but has no registered {TAG}; refusing to load it "
            "(tag removed?)")
    found = problems(folder, expected)
    if not found:
        return None
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return (f"{label} failed its integrity check: {'; '.join(found[:3])}{more}; refusing to "
            "load it (files tampered with in the registry?)")


def unsealed(label: str) -> str:
    return f"{label} has no integrity manifest (registered before manifests)"
