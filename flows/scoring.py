"""Batch scoring: the champion scores a file or a Snowflake query into predictions."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime

from prefect import flow

from tasks.adapters.registries import connect
from tasks.adapters.slack import notify_flow_failure
from tasks.adapters.sources import fill_date
from tasks.batch.champion import champion_model
from tasks.batch.scoring import publish_summary, score
from tasks.contracts.batch import ScoringSummary
from tasks.core.config import load_config
from tasks.core.heartbeats import beating
from tasks.core.parameters import ModelName
from tasks.core.runnames import run_name
from tasks.core.settings import Settings
from tasks.release.proposal import recorded_champion
from tasks.reports.batch import scoring_row
from tasks.reports.gitlab import write_wiki_row


@flow(name="batch-scoring", flow_run_name=run_name("score"), log_prints=True,
      on_failure=[notify_flow_failure], on_crashed=[notify_flow_failure])
@beating
def batch_scoring(model: ModelName, input: str, output: str, day: date | None = None,
                  keep: list[str] | None = None, explain: int = 0) -> ScoringSummary:
    """Score a batch of claims with the model's champion and write the predictions.

    Args:
        model: A model configured under configs/models (its name).
        input: The claims to score: a .parquet or .csv path (relative to the worker's project
            dir) or URL, or snowflake:<query>; {date} in it becomes the day. A URL holding
            credentials is given redacted (https://***@host/…): the worker holds it in
            MLOPS_DATA_URLS(_BLOCK).
        output: Where the predictions go: a .parquet or .csv path or snowflake:<table>; {date}
            in it becomes the day.
        day: The day to score (YYYY-MM-DD, UTC); empty: today.
        keep: Input columns copied next to the predictions (e.g. claim_id); empty: none.
        explain: Add each row's k largest SHAP contributions (0: none).
    """
    settings = Settings.from_env()
    cfg = load_config(model, settings.config_dir)
    stamp = (day or datetime.now(UTC).date()).isoformat()
    registry = connect(settings)
    with tempfile.TemporaryDirectory(prefix="mlops-champion-") as tmp:
        recorded = recorded_champion(registry=registry, cfg=cfg, settings=settings,
                                     key=settings.resolve_audit_key())
        champion = champion_model(registry=registry, cfg=cfg, into=tmp, version=recorded)
        summary = score(champion=champion, input_location=fill_date(input, stamp),
                        snowflake=settings.snowflake,
                        output_location=fill_date(output, stamp), keep=keep, explain=explain)
    publish_summary(summary)
    write_wiki_row(model=cfg.name, row=scoring_row(summary), settings=settings)
    return summary
