"""The Prefect profile `mlops-local`: plain `prefect` commands talk to the local stack while it
runs (`mlops server start` creates and activates it, `mlops server stop` activates the previous
one again and removes it).
Uses Prefect's own profile API, so the profiles file is the one PREFECT_HOME (or
PREFECT_PROFILES_PATH) names."""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Mapping
from pathlib import Path

PROFILE = "mlops-local"
PREVIOUS = "previous-profile"  # under the stack dir: the profile active before ours


def activate(api_url: str, stack_dir: Path) -> str | None:
    """Create or update `mlops-local` with the stack's API URL and make it active; returns the
    profile that was active before (remembered under stack_dir for `deactivate`)."""
    from prefect.settings.profiles import load_profiles, save_profiles

    profiles = load_profiles()
    previous = profiles.active_name
    profiles.update_profile(PROFILE, {"PREFECT_API_URL": api_url})
    profiles.set_active(PROFILE)
    save_profiles(profiles)
    if previous != PROFILE:
        stack_dir.mkdir(parents=True, exist_ok=True)
        (stack_dir / PREVIOUS).write_text(f"{previous or ''}\n")
    return previous


def deactivate(stack_dir: Path) -> str | None:
    """Activate the profile that was active before `activate`, if ours is still the active one
    (a profile the user chose since is left alone); returns the profile now active, or None when
    nothing changed."""
    from prefect.settings.profiles import load_profiles, save_profiles

    marker = stack_dir / PREVIOUS
    profiles = load_profiles()
    if profiles.active_name != PROFILE:
        marker.unlink(missing_ok=True)
        if PROFILE in profiles.names:  # it names a stack that is stopping: not left behind
            profiles.remove_profile(PROFILE)
            save_profiles(profiles)
        return None
    try:
        previous = marker.read_text().strip() or None
    except OSError:
        previous = None
    if previous not in profiles.names:
        previous = "ephemeral" if "ephemeral" in profiles.names else None
    profiles.set_active(previous)
    profiles.remove_profile(PROFILE)
    save_profiles(profiles)
    marker.unlink(missing_ok=True)
    return previous


def active(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The active profile's name and its PREFECT_API_URL (None when it names none), as
    Prefect's load_profiles answers, read from the files without importing Prefect (about a
    second of CPU): the profiles file PREFECT_PROFILES_PATH or PREFECT_HOME names over the
    defaults Prefect ships (env: the process environment, mlops.local_server.environment)."""
    home = Path(env.get("PREFECT_HOME") or "~/.prefect").expanduser()
    mine = _read_toml(Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml"))
    spec = importlib.util.find_spec("prefect")  # finds the package, imports nothing
    where = (spec.submodule_search_locations or []) if spec else []
    shipped = _read_toml(Path(where[0]) / "settings" / "profiles.toml") if where else {}
    name = mine.get("active") or shipped.get("active")
    found = {**(shipped.get("profiles") or {}), **(mine.get("profiles") or {})}
    if not name or name not in found:
        return None, None
    url = found[name].get("PREFECT_API_URL")
    return name, str(url) if url else None


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
