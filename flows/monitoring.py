"""Monitoring: recent scoring inputs against the champion's reference profile; drift emits an
event that starts a retrain (prefect.yaml triggers) and tells Slack."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime

from prefect import flow

from tasks.adapters.registries import connect
from tasks.adapters.slack import notify_flow_failure
from tasks.adapters.sources import fill_date
from tasks.batch.champion import champion_model
from tasks.batch.monitoring import announce, compare_to_reference, observe_batch, publish_report
from tasks.contracts.batch import DriftReport
from tasks.core.config import load_config
from tasks.core.heartbeats import beating
from tasks.core.parameters import ModelName
from tasks.core.runnames import run_name
from tasks.core.settings import Settings
from tasks.release.proposal import recorded_champion
from tasks.reports.batch import monitoring_row
from tasks.reports.gitlab import write_wiki_row


@flow(name="monitoring", flow_run_name=run_name("monitor"), log_prints=True,
      on_failure=[notify_flow_failure], on_crashed=[notify_flow_failure])
@beating
def monitoring(model: ModelName, input: str, day: date | None = None) -> DriftReport:
    """Compare a batch of inputs with the reference profile of the model's champion; drift emits
    mlops.model.drift-detected (a retrain trigger) and tells Slack.

    Args:
        model: A model configured under configs/models (its name).
        input: The batch to check: a .parquet or .csv path (relative to the worker's project
            dir) or URL, or snowflake:<query>; {date} in it becomes the day. A URL holding
            credentials is given redacted (https://***@host/…): the worker holds it in
            MLOPS_DATA_URLS(_BLOCK).
        day: The day to check (YYYY-MM-DD, UTC); empty: today.
    """
    settings = Settings.from_env()
    cfg = load_config(model, settings.config_dir)
    started = datetime.now(UTC)
    location = fill_date(input, (day or started.date()).isoformat())
    registry = connect(settings)
    with tempfile.TemporaryDirectory(prefix="mlops-champion-") as tmp:
        recorded = recorded_champion(registry=registry, cfg=cfg, settings=settings,
                                     key=settings.resolve_audit_key())
        champion = champion_model(registry=registry, cfg=cfg, into=tmp, version=recorded)
        observed = observe_batch(champion=champion, location=location, cfg=cfg,
                                 snowflake=settings.snowflake)
    report = compare_to_reference(champion=champion, observed=observed, cfg=cfg,
                                  location=location)
    report = publish_report(registry=registry, report=report, champion=champion,
                            observed=observed)
    print(f"{report.model} v{report.version}: {report.verdict} — {report.message}")
    if report.verdict == "drift":
        announce(report=report, slack_block=settings.slack_block)
    write_wiki_row(model=cfg.name, row=monitoring_row(report, started.strftime("%Y-%m-%d %H:%M")),
                   settings=settings)
    return report
