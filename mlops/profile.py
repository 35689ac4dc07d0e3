"""The Prefect profile `mlops-local`: plain `prefect` commands talk to the local stack while it
runs (`mlops server start` activates it, `mlops server stop` activates the previous one again).
Uses Prefect's own profile API, so the profiles file is the one PREFECT_HOME (or
PREFECT_PROFILES_PATH) names."""

from __future__ import annotations

from pathlib import Path

PROFILE = "mlops-local"
PREVIOUS = "previous-profile"  # under the stack dir: the profile active before ours


def activate(api_url: str, stack_dir: Path) -> str | None:
    """Create or update `mlops-local` with the stack's API URL and make it active; returns the
    profile that was active before (remembered under stack_dir for `deactivate`)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.settings.profiles import load_profiles, save_profiles

    profiles = load_profiles()
    previous = profiles.active_name
    profiles.update_profile(PROFILE, {PREFECT_API_URL: api_url})
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
        return None
    try:
        previous = marker.read_text().strip() or None
    except OSError:
        previous = None
    if previous not in profiles.names:
        previous = "ephemeral" if "ephemeral" in profiles.names else None
    profiles.set_active(previous)
    save_profiles(profiles)
    marker.unlink(missing_ok=True)
    return previous


def active() -> tuple[str | None, str | None]:
    """The active profile's name and its PREFECT_API_URL (None when it names none)."""
    from prefect.settings.profiles import load_profiles

    profiles = load_profiles()
    current = profiles.active_profile
    if current is None:
        return None, None
    url = next((str(v) for k, v in current.settings.items() if k.name == "PREFECT_API_URL"), None)
    return current.name, url
