"""The CLI looks and answers like its neighbours (prefect, mlflow, uv): `-h` everywhere, `--json`
on every read command, choices for closed sets, one meaning per option name, Rich tables whose
cells are never cut, one precision for metrics, and no line said twice."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import typer
from typer.core import _click as click  # Typer vendors its own Click
from typer.testing import CliRunner

from mlops.cli import app
from tasks.core.errors import EXIT_MEANINGS, ExitCode
from tests.unit.test_status import _record, _store, home  # noqa: F401 (a fixture)

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]

# what reads (answers a question, changes nothing) and what acts; a new command must be put in
# one of them, and every read command must answer in JSON
READS = {"status", "history", "audit verify", "compliance", "models", "check-config",
         "check-deployments", "schedules", "server status"}
ACTIONS = {"train", "run", "approve", "promote", "rollback", "check-off", "score", "monitor",
           "reproduce", "generate", "ci", "pools apply", "pools show",
           "schedules migrate-from-gitlab", "server start", "server stop", "audit repair",
           "audit realign"}


def commands() -> dict:
    """Every command by its path (`audit verify`), groups with a callback of their own included
    (`schedules` lists when called alone)."""
    root = typer.main.get_command(app)
    found: dict = {}

    def walk(group, prefix: str) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            path = f"{prefix}{name}"
            if hasattr(command, "list_commands"):
                if command.invoke_without_command:
                    found[path] = command
                walk(command, path + " ")
            else:
                found[path] = command

    walk(root, "")
    return found


def option_names(command, hidden: bool = False) -> set[str]:
    return {name for p in command.params if p.param_type_name == "option"
            and (hidden or not p.hidden) for name in p.opts}


def test_every_command_is_a_read_or_an_action():
    assert set(commands()) == READS | ACTIONS, "classify the new command in READS or ACTIONS"


@pytest.mark.parametrize("path", sorted(READS))
def test_every_read_command_has_json_and_h(path):
    command = commands()[path]
    assert "--json" in option_names(command), f"mlops {path} has no --json"
    shown = runner.invoke(app, [*path.split(), "-h"])
    assert shown.exit_code == 0 and "--json" in shown.stdout, shown.output


def test_the_surface_checks_fail_on_a_read_command_without_json():
    """The check above is not vacuous: a command without --json is caught."""
    bare = typer.main.get_command(app).get_command(click.Context(typer.main.get_command(app)),
                                                   "promote")
    assert "--json" not in option_names(bare)


@pytest.mark.parametrize("path", sorted(READS | ACTIONS))
def test_h_is_help_everywhere(path):
    short = runner.invoke(app, [*path.split(), "-h"])
    long = runner.invoke(app, [*path.split(), "--help"])
    assert short.exit_code == 0, short.output
    assert "Usage:" in short.stdout and short.stdout == long.stdout


def test_top_level_help_lists_every_exit_code_from_the_enum():
    shown = " ".join(runner.invoke(app, ["-h"]).stdout.split())
    for code in ExitCode:
        assert f"{int(code)} {EXIT_MEANINGS[code]}" in shown, code
    for panel in ("Pipeline", "Release", "Batch", "Inspect", "Platform"):
        assert panel in shown


def test_version_means_the_tool_version_only():
    """`--version` was the tool, a model version and a version-or-alias: now a model version is
    the argument after the model, and --version is shown on the top level only."""
    showing = [path for path, command in commands().items()
               if "--version" in option_names(command)]
    assert showing == []
    assert runner.invoke(app, ["--version"]).stdout.startswith("prefect-mlops ")


def test_an_option_name_has_one_type_across_commands():
    """One meaning per option name, as far as a type tells: `--as` is always a name, `--json`
    always a flag, `--type` always a pool type."""
    seen: dict[str, set[str]] = {}
    for command in commands().values():
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                for name in param.opts:
                    kind = param.bare_type()  # a path is text that names a place
                    seen.setdefault(name, set()).add("str" if kind == "Path" else kind)
    mixed = {name: types for name, types in seen.items() if len(types) > 1}
    assert not mixed, mixed


def test_closed_sets_are_choices():
    from deployments.pools import POOL_TYPES
    from mlops.compliance import CheckResult
    from mlops.platform import PoolType

    assert [t.value for t in PoolType] == list(POOL_TYPES)
    assert [r.value for r in CheckResult] == ["passed", "failed"]
    wrong = runner.invoke(app, ["pools", "show", "cpu-runners", "--type", "k8s"])
    assert wrong.exit_code == 2 and "gitlab-ci" in wrong.output and "docker" in wrong.output
    shown = " ".join(runner.invoke(app, ["check-off", "-h"]).stdout.split())
    assert "passed" in shown and "failed" in shown
    maybe = runner.invoke(app, ["check-off", "m", "1", "scan", "--result", "maybe"])
    assert maybe.exit_code == 2 and "'maybe' is not one of" in maybe.output


def test_tables_never_cut_a_cell(capsys):
    from mlops.app import print_table

    long = "x" * 70 + " the end of a long comment [DELETED] " + "y" * 70
    print_table(("#", "comment"), [("1", long)])
    out = capsys.readouterr().out
    assert long in out  # whole, on one line in a pipe, brackets not taken for markup
    assert [line for line in out.splitlines() if line.strip()][-1].strip().startswith("1 ")


def test_history_shows_a_long_comment_whole_and_answers_in_json(home):  # noqa: F811
    from tasks.adapters.audit_trail import AuditTrail, event
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings

    _store(home)
    settings = Settings.from_env()
    trail = AuditTrail(open_registry(settings), "tiny", settings=settings,
                       key=settings.resolve_audit_key())
    why = "rolled back because the settlement model over-predicted total-loss claims in the north"
    trail.write(event("promoted", "test", "1", "2", "pipeline", alias="champion", comment=why))
    text = runner.invoke(app, ["history", "tiny"])
    assert text.exit_code == 0, text.output
    assert why in text.stdout  # was cut at 50 characters
    out = runner.invoke(app, ["history", "tiny", "--json"])
    assert out.exit_code == 0, out.output
    parsed = json.loads(out.stdout)
    assert parsed["intact"] is True and parsed["records"][-1]["comment"] == why


def test_audit_verify_and_compliance_answer_in_json(home):  # noqa: F811
    _store(home)
    verified = runner.invoke(app, ["audit", "verify", "tiny", "--json"])
    assert verified.exit_code == 0, verified.output
    parsed = json.loads(verified.stdout)
    assert parsed["verdict"] == "intact" and parsed["records"] == 3
    assert parsed["aliases"] == {"champion": "1", "staging": "2"}
    compliance = runner.invoke(app, ["compliance", "tiny", "--json"])
    versions = json.loads(compliance.stdout)["versions"]
    assert [v["version"] for v in versions] == ["1", "2"] or [v["version"] for v in versions] == [
        "2", "1"]
    one = runner.invoke(app, ["compliance", "tiny", "2", "--json"])
    assert [v["version"] for v in json.loads(one.stdout)["versions"]] == ["2"]


def test_config_commands_answer_in_json(home):  # noqa: F811
    models = runner.invoke(app, ["models", "--json"])
    assert models.exit_code == 0, models.output
    assert {m["model"] for m in json.loads(models.stdout)} == {"tiny", "other"}
    checked = runner.invoke(app, ["check-config", str(home / "configs" / "tiny.yaml"), "--json"])
    assert checked.exit_code == 0 and json.loads(checked.stdout)["model"] == "tiny"
    manifest = runner.invoke(app, ["check-deployments", "--prefect-file", str(ROOT / "prefect.yaml"),
                                   "--json"])  # no deployments for these two models: problems
    assert manifest.exit_code == 2 and json.loads(manifest.stdout)["valid"] is False
    schedules = runner.invoke(app, ["schedules", "--prefect-file", str(ROOT / "prefect.yaml"),
                                    "--json"])
    assert schedules.exit_code == 0, schedules.output
    assert all("cron" in s for s in json.loads(schedules.stdout)["schedules"])
    stack = runner.invoke(app, ["server", "status", "--json"])
    assert stack.exit_code == 1  # nothing runs under this MLOPS_HOME
    assert {s["name"] for s in json.loads(stack.stdout)["servers"]} == {"prefect", "mlflow"}


def test_metrics_have_one_precision_whatever_they_come_as():
    from tasks.reports.format import fmt, fmt_any

    assert fmt(0.81) == fmt_any("0.81") == "0.8100"
    assert fmt_any(None) == fmt_any("") == "" and fmt_any("n/a") == "n/a"


class Said(logging.Handler):
    """The records of one logger (Prefect's logging setup may replace the root's handlers)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_skipped_gitlab_lines_are_not_said_on_every_laptop_run(monkeypatch):
    """Without GitLab the wiki row and the merge request report are skipped quietly on a laptop
    (they were INFO lines on every run); in a CI job, where a missing token is a mistake, the
    line is still said."""
    import prefect.logging

    from tasks.core.settings import Settings
    from tasks.reports.gitlab import _merge_request, write_wiki_row

    laptop_settings = Settings.from_env({})
    ci_settings = Settings.from_env({"CI_SERVER_URL": "https://gitlab.example.com"})  # no token
    logger = logging.getLogger("test-gitlab-skipped")
    logger.setLevel(logging.DEBUG)
    said = Said()
    logger.addHandler(said)
    monkeypatch.setattr(prefect.logging, "get_run_logger", lambda *a, **k: logger)
    try:
        assert write_wiki_row.fn("tiny", "| row |", laptop_settings) == "skipped"
        assert _merge_request(laptop_settings) is None
        laptop = [(r.levelno, r.getMessage()) for r in said.records]
        said.records.clear()
        assert write_wiki_row.fn("tiny", "| row |", ci_settings) == "skipped"
        ci = [(r.levelno, r.getMessage()) for r in said.records]
    finally:
        logger.removeHandler(said)
    assert [level for level, _ in laptop] == [logging.DEBUG, logging.DEBUG], laptop
    assert "wiki page skipped" in laptop[0][1] and "merge request report skipped" in laptop[1][1]
    assert [level for level, message in ci if "wiki page skipped" in message] == [logging.INFO]


def test_the_approval_form_says_what_is_wrong_in_words():
    """The browser showed `'' does not match '\\S'` under "Comment (Optional)"."""
    from prefect.utilities.schema_tools.validation import build_error_obj, validate

    from tasks.release.approval_form import ApprovalForm

    schema = ApprovalForm.model_json_schema()
    comment = schema["properties"]["comment"]
    # the UI appends "(Optional)" to the title of a field not listed as required
    assert comment["title"] == "Comment (required to reject)" and "comment" in schema["required"]
    assert comment["default"] == ""  # what the UI sends untouched: an approval needs no comment
    errors = validate({"decision": "reject", "approver": "alice", "comment": ""}, schema,
                      raise_on_error=False)
    said = json.dumps(build_error_obj(errors))
    assert "does not match" not in said and "\\\\S" not in said
    assert "should be non-empty" in said
    assert not validate({"decision": "approve", "approver": "alice", "comment": ""}, schema,
                        raise_on_error=False)
    with pytest.raises(ValueError, match="say why you reject"):
        ApprovalForm(decision="reject", approver="alice", comment="  ")


def test_a_blank_approver_is_refused_in_words_not_by_a_regex():
    """A blank-only name showed `'  ' does not match '\\S'`: the form carries no regex; the
    model refuses it with a sentence (and the next question repeats it)."""
    from prefect.utilities.schema_tools.validation import build_error_obj, validate

    from tasks.release.approval_form import ApprovalForm, form_for

    for identity in ("declared", "gitlab"):
        schema = form_for(identity).model_json_schema()
        assert "pattern" not in schema["properties"]["approver"]
        errors = validate({"decision": "approve", "approver": "  ", "comment": ""}, schema,
                          raise_on_error=False)
        assert "does not match" not in json.dumps(build_error_obj(errors))
        with pytest.raises(ValueError, match="enter your name as the approver"):
            form_for(identity)(decision="approve", approver="  ", comment="")
    assert form_for("declared")(decision="approve", approver=" bob ").approver == "bob"
    assert issubclass(form_for("declared"), ApprovalForm)


def test_the_approver_field_says_what_the_configured_identity_asks_for():
    from tasks.release.approval import form_for

    def described(identity: str) -> str:
        return form_for(identity).model_json_schema()["properties"]["approver"]["description"]

    assert "GitLab" not in described("declared") and "as typed" in described("declared")
    assert "GitLab username" in described("gitlab")


def test_the_cli_reference_lists_every_command():
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [path for path in commands() if f"`mlops {path}`" not in text]
    assert not missing, f"docs/cli.md lacks {missing}: regenerate its reference"


def test_history_shows_why_a_refusal_was_refused_beside_the_persons_comment(home):  # noqa: F811
    from tasks.adapters.audit_trail import AuditTrail, event
    from tasks.adapters.registries import open_registry
    from tasks.core.settings import Settings

    _store(home)
    settings = Settings.from_env()
    trail = AuditTrail(open_registry(settings), "tiny", settings=settings,
                       key=settings.resolve_audit_key())
    trail.write(event("approval-refused", "production", None, "2", "dave", "my model, ship it",
                      reason="four eyes: dave built v2"))
    shown = runner.invoke(app, ["history", "tiny"])
    assert shown.exit_code == 0, shown.output
    assert "four eyes: dave built v2 (comment: my model, ship it)" in shown.stdout
