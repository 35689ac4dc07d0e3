"""The GitLab adapter against the fake GitLab API: notes, uploads, deployments, schedules, and
the faults that must never fail a pipeline (scope, rate limit, unreachable)."""

from __future__ import annotations

import logging

import pytest

from tasks.adapters.gitlab import GitLab
from tasks.core.settings import GitLabSettings, Settings
from tests.fakes.gitlab_api import FakeGitLab


@pytest.fixture
def fake():
    server = FakeGitLab(tokens={"glpat-good": ["api"], "glpat-read": ["read_api"]}).start()
    yield server
    server.stop()


def adapter(url: str, token: str = "glpat-good", **kw) -> tuple[GitLab, list[float]]:
    waits: list[float] = []
    settings = GitLabSettings(url=url, project_id="42", token=token, **kw)
    return GitLab(settings, sleep=waits.append), waits


def test_settings_come_from_ci_variables_and_are_optional():
    env = {"CI_SERVER_URL": "https://gitlab.example.com/", "CI_PROJECT_ID": "42",
           "MLOPS_GITLAB_TOKEN": "glpat-secret", "CI_MERGE_REQUEST_IID": "17",
           "CI_COMMIT_SHA": "a" * 40, "CI_COMMIT_REF_NAME": "feature"}
    settings = Settings.from_env(env).gitlab
    assert settings.url == "https://gitlab.example.com" and settings.merge_request_iid == "17"
    assert "glpat-secret" not in repr(settings)
    assert "glpat-secret" not in repr(Settings.from_env(env))
    assert Settings.from_env({k: v for k, v in env.items() if k != "MLOPS_GITLAB_TOKEN"}
                             ).gitlab is None


def test_note_is_created_once_then_updated(fake):
    gl, _ = adapter(fake.url)
    first = gl.upsert_note("17", "<!-- mark:fraud -->", "<!-- mark:fraud -->\nv1")
    second = gl.upsert_note("17", "<!-- mark:fraud -->", "<!-- mark:fraud -->\nv2")
    other = gl.upsert_note("17", "<!-- mark:damage -->", "<!-- mark:damage -->\nv1")
    assert first["action"] == "created" and second == {"id": first["id"], "action": "updated"}
    assert other["action"] == "created"
    bodies = [n["body"] for n in fake.notes["17"]]
    assert bodies == ["<!-- mark:fraud -->\nv2", "<!-- mark:damage -->\nv1"]


def test_upload_and_deployment(fake, tmp_path):
    gl, _ = adapter(fake.url)
    png = tmp_path / "roc.png"
    png.write_bytes(b"\x89PNG fake")
    assert gl.upload(str(png)).startswith("![roc](/uploads/")
    made = gl.record_deployment("production", "success", "a" * 40, "main")
    assert made["environment"] == "production"
    assert fake.deployments[0]["sha"] == "a" * 40 and fake.deployments[0]["status"] == "success"


def test_token_without_api_scope_is_a_warning_not_an_error(fake, caplog):
    gl, waits = adapter(fake.url, token="glpat-read")
    with caplog.at_level(logging.WARNING, logger="mlops.gitlab"):
        assert gl.upsert_note("17", "m", "m body") is None
    assert "HTTP 403" in caplog.text and "api scope" in caplog.text
    assert "glpat-read" not in caplog.text and waits == []


def test_rate_limit_honours_retry_after_then_succeeds(fake):
    gl, waits = adapter(fake.url)
    fake.fail_next(2, status=429, retry_after="2")
    assert gl.record_deployment("staging", "success", "b" * 40, "main") is not None
    assert waits == [2.0, 2.0]


def test_retry_after_is_capped_and_attempts_bounded(fake, caplog):
    gl, waits = adapter(fake.url, attempts=3, max_wait_s=5)
    fake.fail_next(5, status=429, retry_after="3600")
    with caplog.at_level(logging.WARNING, logger="mlops.gitlab"):
        assert gl.record_deployment("staging", "success", "b" * 40, "main") is None
    assert waits == [5, 5] and "failed after 3 attempts (HTTP 429)" in caplog.text
    assert fake.deployments == []


def test_unreachable_gitlab_is_a_warning(caplog):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gl, waits = adapter(f"http://127.0.0.1:{port}", attempts=2)
    with caplog.at_level(logging.WARNING, logger="mlops.gitlab"):
        assert gl.pipeline_schedules() is None
    assert len(waits) == 1 and "failed after 2 attempts" in caplog.text


def test_schedules_with_variables_and_deactivation(fake):
    fake.add_schedule("weekly retrain", "0 2 * * 1", "Europe/Berlin",
                      {"SCHEDULED_RETRAIN": "true", "TRAINING_DATA_DATE": "2026-11-01"})
    gl, _ = adapter(fake.url)
    [schedule] = gl.pipeline_schedules()
    assert schedule["cron_timezone"] == "Europe/Berlin"
    assert schedule["variables"] == {"SCHEDULED_RETRAIN": "true",
                                     "TRAINING_DATA_DATE": "2026-11-01"}
    assert gl.deactivate_schedule(schedule["id"]) and fake.schedules[0]["active"] is False


def test_wiki_page_gets_newest_rows_first(fake):
    gl, _ = adapter(fake.url)
    header = "# fraud runs\n\n| when | what |\n|---|---|"
    assert gl.prepend_wiki_row("mlops/fraud", header, "| day 1 | scored |") == "created"
    assert gl.prepend_wiki_row("mlops/fraud", header, "| day 2 | scored |") == "updated"
    gl.prepend_wiki_row("mlops/fraud", header, "| day 3 | drift |", keep=2)
    assert fake.wikis["mlops/fraud"]["content"].splitlines()[-2:] == ["| day 3 | drift |",
                                                                       "| day 2 | scored |"]
    assert fake.wikis["mlops/fraud"]["content"].startswith("# fraud runs\n")
