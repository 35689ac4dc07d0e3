"""The CI trigger's pure parts: commit messages, GitLab variables, idempotency keys, verdicts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from deployments.ci import CiContext, check_targets, idempotency_key, outcome, parse_targets
from tasks.core.errors import ConfigError


@pytest.mark.parametrize(("message", "targets"), [
    ("train fraud", ["fraud"]),
    ("train fraud damage\n\nbody text", ["fraud", "damage"]),
    ("Train fraud, settlement fraud", ["fraud", "settlement"]),
    ("train notebooks/x.ipynb", ["notebooks/x.ipynb"]),
    ("fix: retrain docs", None),
    ("train", None),
    ("", None),
])
def test_parse_targets(message, targets):
    assert parse_targets(message) == targets


REPO = Path(__file__).resolve().parents[2]


def test_unknown_model_and_missing_notebook_are_refused_before_anything_starts():
    with pytest.raises(ConfigError, match=r"unknown model\(s\) nosuch .*known: damage, fraud"):
        check_targets(["fraud", "nosuch"], {"fraud", "damage"})
    with pytest.raises(ConfigError, match="notebook .*notebooks/x.ipynb does not exist"):
        check_targets(["notebooks/x.ipynb"], {"fraud"}, REPO)
    assert check_targets(["fraud"], {"fraud"}) == ["fraud"]
    shipped = "notebooks/train_fraud.ipynb"
    assert check_targets(["fraud", shipped], {"fraud"}, REPO) == ["fraud", shipped]


def test_notebooks_run_on_the_notebook_deployment_with_their_own_key():
    from deployments.ci import deployment_for

    ctx = CiContext.from_env({"CI_COMMIT_MESSAGE": "train notebooks/train_fraud.ipynb",
                              "CI_PIPELINE_ID": "77"})
    assert deployment_for("notebooks/train_fraud.ipynb") == (
        "notebook-training/notebooks", {"notebook": "notebooks/train_fraud.ipynb"})
    assert idempotency_key(ctx, "fraud") == "gitlab-pipeline-77-training-pipeline/fraud"
    assert idempotency_key(ctx, "notebooks/train_fraud.ipynb") == \
        "gitlab-pipeline-77-notebook-training/notebooks:notebooks/train_fraud.ipynb"


def test_context_from_gitlab_variables():
    ctx = CiContext.from_env({"CI_COMMIT_MESSAGE": "train fraud", "CI_PIPELINE_ID": "42",
                              "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_SHA": "abcdef1234567890",
                              "TRAINING_DATA_DATE": "2025-06-30"})
    assert ctx.as_of == date(2025, 6, 30)
    assert ctx.tags() == ["gitlab-pipeline:42", "ref:main", "sha:abcdef123456"]
    assert idempotency_key(ctx, "fraud") == "gitlab-pipeline-42-training-pipeline/fraud"
    with pytest.raises(ConfigError, match="CI_PIPELINE_ID is not set"):
        CiContext.from_env({"CI_COMMIT_MESSAGE": "train fraud"})
    with pytest.raises(ConfigError, match="TRAINING_DATA_DATE='yesterday' is not a date"):
        CiContext.from_env({"CI_PIPELINE_ID": "1", "TRAINING_DATA_DATE": "yesterday"})


def test_outcome_codes():
    assert outcome("COMPLETED", "") == 0
    assert outcome("FAILED", "Flow run encountered an exception: GateRejected: fraud gate") == 3
    assert outcome("FAILED", "Flow run encountered an exception: DataError: empty") == 1
    assert outcome("CRASHED", "Execution was aborted by a termination signal.") == 1
    assert outcome("CANCELLED", "") == 1
