"""The embedded default data: deterministic synthetic motor claims with the three targets.

numpy and pandas are imported where rows are made: the up-to-date check reads only
GENERATOR_VERSION."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

GENERATOR_VERSION = "claims-v1"  # part of every synthetic fingerprint: bump it when rows change
REGIONS = ("north", "south", "east", "west", "central")
VEHICLES = ("sedan", "suv", "truck", "motorcycle", "van")
CHANNELS = ("agent", "online", "phone")
SEVERITIES = ("minor", "moderate", "severe", "total_loss")


def generate_claims(rows: int, seed: int = 7, drift: float = 0.0) -> pd.DataFrame:
    """Deterministic synthetic motor claims with fraud, severity and settlement targets.

    `drift` shifts the inputs (amounts, reporting delays, region and channel mix, vehicle
    age) the way a changing book of business would; the relationships stay the same.
    """
    import numpy as np
    import pandas as pd

    if rows < 1:
        raise DataError(f"rows must be positive, got {rows}")
    rng = np.random.default_rng(seed)
    n = rows
    region_p = np.array([0.22, 0.22, 0.2, 0.2, 0.16])
    if drift:
        region_p = region_p + drift * np.array([-0.1, 0.3, -0.05, -0.1, -0.05])
        region_p = np.clip(region_p, 0.01, None)
        region_p /= region_p.sum()
    channel_p = np.array([0.45, 0.3, 0.25]) + drift * np.array([-0.2, 0.25, -0.05])
    channel_p = np.clip(channel_p, 0.01, None)
    channel_p /= channel_p.sum()

    region = rng.choice(np.array(REGIONS), n, p=region_p)
    vehicle = rng.choice(np.array(VEHICLES), n, p=[0.4, 0.3, 0.12, 0.08, 0.1])
    channel = rng.choice(np.array(CHANNELS), n, p=channel_p)
    tenure = rng.gamma(2.0, 24.0, n).round(0)
    age = np.clip(rng.normal(44, 13, n), 18, 90).round(0)
    vehicle_age = np.clip(rng.gamma(2.2, 3.0, n) * (1 + 0.5 * drift), 0, 30).round(1)
    prior_claims = rng.poisson(0.6, n)
    days_to_report = np.floor(rng.exponential(4.0 * (1 + drift), n)).astype(int)
    hour = rng.integers(0, 24, n)
    police = (rng.random(n) < 0.55).astype(int)
    witnesses = rng.poisson(0.8, n)
    speed = np.clip(rng.normal(55, 20, n), 5, 160).round(0)
    injury = (rng.random(n) < 0.12 + 0.002 * (speed - 55).clip(0)).astype(int)
    repair = np.exp(rng.normal(7.6, 0.8, n) + 0.012 * (speed - 55)) * (1 + 0.6 * drift)
    claim_amount = repair * np.exp(rng.normal(0.15, 0.25, n)) + injury * rng.gamma(2, 2500, n)

    region_risk = pd.Series({"north": -0.2, "south": 0.45, "east": 0.0, "west": -0.1,
                             "central": 0.2})[region].to_numpy()
    logit = (
        -5.1
        + 0.16 * np.minimum(days_to_report, 30)
        - 1.5 * police
        + 2.2 * np.log1p(claim_amount / repair)
        - 0.03 * np.minimum(tenure, 120)
        + 1.0 * (channel == "online")
        + 0.55 * prior_claims
        + 1.2 * ((hour < 5) | (hour > 22))
        - 0.5 * np.minimum(witnesses, 3)
        + 1.5 * region_risk
    )
    is_fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)

    vehicle_fragility = pd.Series({"sedan": 0.0, "suv": -0.2, "truck": -0.35, "motorcycle": 0.8,
                                   "van": -0.1})[vehicle].to_numpy()
    latent = (
        0.035 * (speed - 55)
        + 0.9 * np.log(repair / 2000)
        + 0.06 * vehicle_age
        + 1.1 * injury
        + vehicle_fragility
        + rng.normal(0, 0.55, n)
    )
    cuts = np.array([0.0, 1.1, 2.4])
    severity = np.array(SEVERITIES)[np.searchsorted(cuts, latent)]

    severity_factor = pd.Series({"minor": 0.8, "moderate": 1.0, "severe": 1.35,
                                 "total_loss": 2.2})[severity].to_numpy()
    region_cost = pd.Series({"north": 1.0, "south": 0.92, "east": 1.05, "west": 1.12,
                             "central": 1.0})[region].to_numpy()
    settlement = (
        repair * severity_factor * region_cost
        + injury * 4000
        + 350 * np.minimum(witnesses, 3)
    ) * np.where(is_fraud == 1, 0.35, 1.0) * np.exp(rng.normal(0, 0.12, n))

    start = np.datetime64("2024-01-01")
    offset = rng.integers(0, 730, n) + int(365 * drift)
    return pd.DataFrame(
        {
            "claim_id": np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 8)),
            "event_date": (start + offset.astype("timedelta64[D]")).astype("datetime64[ns]"),
            "region": region,
            "vehicle_type": vehicle,
            "claim_channel": channel,
            "policy_tenure_months": tenure,
            "customer_age": age,
            "vehicle_age": vehicle_age,
            "prior_claims": prior_claims,
            "days_to_report": days_to_report,
            "hour_of_day": hour,
            "police_report": police,
            "witness_count": witnesses,
            "impact_speed_kmh": speed,
            "injury_reported": injury,
            "repair_estimate": repair.round(2),
            "claim_amount": claim_amount.round(2),
            "is_fraud": is_fraud,
            "damage_severity": severity,
            "settlement_amount": settlement.round(2),
        }
    )


def write_parts(frame: pd.DataFrame, folder, parts: int, write) -> list[str]:
    """The rows in order as `parts` Parquet files part-00000.parquet… of a new folder (a
    dataset); `write(frame, path)` writes one file atomically."""
    from pathlib import Path

    import numpy as np

    folder = Path(folder)
    if folder.suffix:
        raise ConfigError(f"--parts writes a folder of Parquet files: name a folder, not {folder}")
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty; a dataset folder is written whole or not at all")
    import shutil

    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    try:
        for i in range(parts):
            write(frame.iloc[bounds[i]:bounds[i + 1]], partial / f"part-{i:05d}.parquet")
        if folder.exists():
            folder.rmdir()
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sorted(str(p) for p in folder.iterdir())
