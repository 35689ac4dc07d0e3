"""The approval as a person gives it: headless Chromium on the real Prefect UI (the shared
server), a pipeline paused for approval by `mlops run` in another process. The form shows the
verdict, refuses an untouched Submit (the run stays paused), and an approval picked in the form
moves the champion; the deploy run then carries its summary artifact."""

from __future__ import annotations

import time

import pytest

from tests.e2e.browser import (
    browser_page,
    choose,
    chromium_path,
    fill,
    keep_screenshot,
    open_resume_form,
    submit,
)
from tests.e2e.conftest import BIN, background, paused_run
from tests.e2e.test_approval import api, champion, setup_env

pytestmark = pytest.mark.slow


def state_of(url: str, run_id: str) -> str:
    return api(url, f"/flow_runs/{run_id}")["state"]["type"]


def wait_state(url: str, run_id: str, wanted: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (state := state_of(url, run_id)) != wanted:
        assert time.monotonic() < deadline, f"run {run_id} is {state}, not {wanted}"
        time.sleep(0.5)


def test_approval_in_the_prefect_ui(prefect_server, tmp_path):
    chromium_path()  # skips loudly before any training when there is no browser
    ui = prefect_server.removesuffix("/api")
    env = setup_env(tmp_path, prefect_server, "uiapp")
    with background([str(BIN / "mlops"), "run", "uiapp"], tmp_path / "run.log", env=env) as run:
        run_id = paused_run(prefect_server, "uiapp")
        started = time.monotonic()
        with browser_page() as page:
            form = open_resume_form(page, ui, run_id)
            keep_screenshot(page, "approval-form")
            text = form.inner_text()
            # the verdict first: gate with its floor, staging, the champion comparison
            assert "Promote uiapp v1 to production?" in text
            assert "Gate passed: roc_auc" in text and "(the floor is 0.6)" in text
            assert "Staging passed:" in text and "No champion yet" in text

            submit(form)  # untouched: Prefect's schema validation refuses it in the browser
            form.get_by_text("'decision' is a required property").wait_for()
            assert "'approver' is a required property" in form.inner_text()
            assert state_of(prefect_server, run_id) == "PAUSED" and champion(tmp_path,
                                                                              "uiapp") is None

            # a blank-only name: no regex message; refused in words, and the next question
            # says why; the field asks for a name as typed (identity declared), not GitLab's
            assert "as typed" in text and "GitLab username" not in text
            choose(page, form, "approve")
            fill(form, "Approver", "   ")
            submit(form)
            form.wait_for(state="hidden")
            assert "does not match" not in page.content()
            form = open_resume_form(page, ui, run_id)
            form.get_by_text("enter your name as the approver").first.wait_for()
            assert champion(tmp_path, "uiapp") is None

            choose(page, form, "approve")
            fill(form, "Approver", "alice")
            fill(form, "Comment", "looked at it in the browser")
            submit(form)
            form.wait_for(state="hidden")
            wait_state(prefect_server, run_id, "COMPLETED")
            deadline = time.monotonic() + 30  # the run's last writes reach SQLite on a loaded box
            while champion(tmp_path, "uiapp") != "1" and time.monotonic() < deadline:
                time.sleep(0.5)
            assert champion(tmp_path, "uiapp") == "1"

            page.goto(f"{ui}/runs/flow-run/{run_id}")
            page.locator("#artifacts").click()  # the run page's Artifacts tab
            page.get_by_text("uiapp v1: promoted by alice").first.wait_for()
            keep_screenshot(page, "deploy-run-artifacts")
        browsing_s = time.monotonic() - started
        assert run.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()[-3000:]
    # the training run (Running the whole time) said in its own log where the question was
    via = api(prefect_server, f"/flow_runs/{run_id}")["parent_task_run_id"]
    task = api(prefect_server, f"/task_runs/{via}")
    parent = api(prefect_server, f"/flow_runs/{task['flow_run_id']}")
    assert parent["name"].startswith("train-uiapp-")
    said = [entry["message"] for entry in api(prefect_server, "/logs/filter", {
        "logs": {"flow_run_id": {"any_": [parent["id"]]}}})]
    assert any("uiapp v1 waits for approval in run deploy-uiapp-v1: " in m
               and run_id in m for m in said), said
    log = (tmp_path / "run.log").read_text()
    assert "uiapp@champion: v- → v1, approved by alice" in log
    print(f"browser part: {browsing_s:.1f}s")  # the training before it is the slow bit
