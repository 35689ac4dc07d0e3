"""Headless Chromium for the UI tests: Debian's `chromium` driven by Playwright for Python
(`executable_path`; Playwright's own browsers are never downloaded), plus the few Prefect UI
moves the tests make."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

MISSING = ("SKIPPED: no Chromium to drive the Prefect UI. Install Debian's package "
           "(`apt-get install -y chromium`) and run `make install` (Playwright for Python); "
           "the browser test cannot run without them")


def chromium_path() -> str:
    """Debian's chromium, or a loud skip saying how to get it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        import warnings

        warnings.warn(MISSING, stacklevel=2)
        pytest.skip(MISSING)
    return path


@contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator:
    """One headless page; closed (browser included) on the way out."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def open_resume_form(page, ui: str, flow_run_id: str):
    """The paused run's page, then its Resume button: the dialog with the run's input form."""
    for _ in range(10):
        page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
        page.get_by_role("button", name="Resume").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="Submit").wait_for()
        try:  # a page loaded between the pause and its question shows a bare confirmation
            dialog.locator(".schema-form-property").first.wait_for(timeout=5_000)
            return dialog
        except Exception:
            dialog.get_by_role("button", name="Close").click()
    raise AssertionError(f"flow run {flow_run_id} shows no input form in the UI")


def choose(page, dialog, option: str, index: int = 0) -> None:
    """Pick `option` in the form's `index`-th select. Prefect's select opens no list on a click
    in headless Chromium; the keyboard moves its highlight (ArrowDown) and Enter picks."""
    select = dialog.locator(".p-select").nth(index)
    select.locator("button").first.click()
    page.keyboard.press("ArrowDown")
    highlighted = page.locator(".p-select-option--highlighted")
    highlighted.first.wait_for()
    for _ in range(20):
        if highlighted.first.inner_text().strip() == option:
            page.keyboard.press("Enter")
            break
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(100)
    value = select.locator(".p-select-button__value")
    for _ in range(30):  # the form re-renders after the pick
        if value.inner_text().strip() == option:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the select shows {value.inner_text()!r}, not {option!r}")


def fill(dialog, label: str, text: str) -> None:
    """Type into the text field under the property called `label` (its title in the form)."""
    field = dialog.locator(".schema-form-property").filter(has_text=label).first
    field.locator("textarea, input").first.fill(text)


def submit(dialog) -> None:
    dialog.get_by_role("button", name="Submit").click()


def keep_screenshot(page, name: str) -> None:
    """With MLOPS_UI_SCREENSHOTS=<folder> (`make screenshots`), save what the page shows now as
    <folder>/<name>.png: the README's pictures of the UI come from the tests that check it."""
    import os
    from pathlib import Path

    folder = os.environ.get("MLOPS_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))
