"""Exit codes in one table, and the errors the CLI maps to them: bad input is 2, a gate rejection
3, the rest 1 (drift is not an error: `mlops monitor` exits 4 from its report)."""

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """What every `mlops` command's exit status means."""

    DONE = 0
    FAILED = 1
    BAD_INPUT = 2
    GATE_REJECTED = 3
    DRIFT = 4


EXIT_MEANINGS = {
    ExitCode.DONE: "done",
    ExitCode.FAILED: "failed",
    ExitCode.BAD_INPUT: "bad input or setup",
    ExitCode.GATE_REJECTED: "gate rejected",
    ExitCode.DRIFT: "drift found (mlops monitor)",
}

# `mlops monitor`'s exit code for each verdict of a DriftReport
DRIFT_EXITS = {"no-drift": ExitCode.DONE, "drift": ExitCode.DRIFT, "insufficient": ExitCode.BAD_INPUT}

# the named Failed states our flows end in for an outcome that is not a crash (errors' state_name)
GATE_REJECTED_STATE = "GateRejected"
REJECTED_STATE = "Rejected"  # a person rejected the version
# a flow run's final state, by name, as an exit code (`mlops ci`, and the CLI's help): Prefect's
# own names of its final state types, then ours (deployments/ci.py reads it; any other name
# exits 0 when its type is COMPLETED, else 1)
STATE_EXITS = {
    "Completed": ExitCode.DONE,
    "Failed": ExitCode.FAILED,
    "Crashed": ExitCode.FAILED,
    "Cancelled": ExitCode.FAILED,
    GATE_REJECTED_STATE: ExitCode.GATE_REJECTED,
    REJECTED_STATE: ExitCode.FAILED,
}


def exit_codes_help() -> str:
    """The table as one sentence, for help texts: each code, and the run states that end in it."""
    states = {code: [name for name, c in STATE_EXITS.items() if c == code] for code in ExitCode}
    return "Exit codes: " + ", ".join(
        f"{int(c)} {m}" + (f" (runs: {', '.join(states[c])})" if states[c] else "")
        for c, m in EXIT_MEANINGS.items()) + "."


def first_of(problems: list[str]) -> str:
    """The first problem of several, and how many more there are: one line."""
    return problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")


class MlopsError(Exception):
    exit_code = ExitCode.FAILED
    # an outcome, not a crash: a flow ends in the Failed state of this name (STATE_EXITS)
    state_name: ClassVar[str | None] = None


def retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry network hiccups, never a deliberate MlopsError."""
    return not isinstance(state.result(raise_on_failure=False), MlopsError)


class ConfigError(MlopsError):
    """The model YAML or the environment settings are wrong."""

    exit_code = ExitCode.BAD_INPUT


class DataError(MlopsError):
    """The data cannot be read or fails validation."""

    exit_code = ExitCode.BAD_INPUT


class GateRejected(MlopsError):
    """The model did not pass the performance gate; nothing was registered."""

    exit_code = ExitCode.GATE_REJECTED
    state_name = GATE_REJECTED_STATE


class TrackingUnavailable(MlopsError):
    """The MLflow tracking server could not be reached."""

    exit_code = ExitCode.FAILED


class RegistryError(MlopsError):
    """A registry operation was refused."""

    exit_code = ExitCode.FAILED


class LineageIncomplete(MlopsError):
    """A registered version lacks what a rebuild needs (lineage tags, a time-travel point)."""

    exit_code = ExitCode.BAD_INPUT


class UnknownVersion(MlopsError):
    """A model version the registry does not have (a typo in --version)."""

    exit_code = ExitCode.BAD_INPUT


class DeployError(MlopsError):
    """A deployment step failed or was refused; aliases are back where they were."""

    exit_code = ExitCode.FAILED


class ApprovalRejected(DeployError):
    """A person rejected the version (in Prefect or in GitLab); production was not touched."""

    exit_code = ExitCode.FAILED
    state_name = REJECTED_STATE


class PolicyRefused(MlopsError):
    """The organisation policy refuses a version in an environment (tags, classification or a
    check); the refusal is an audit record naming the rule, and no alias moved."""

    exit_code = ExitCode.BAD_INPUT


class TrailMismatch(MlopsError):
    """A live alias is not where the signed audit trail says it is (moved outside the
    pipeline): nothing reads or moves production until it is put back."""

    exit_code = ExitCode.BAD_INPUT


class ApprovalError(MlopsError):
    """An approval that cannot be accepted (unlisted approver, unknown version)."""

    exit_code = ExitCode.BAD_INPUT


class ScoringError(MlopsError):
    """Scoring cannot start: no champion to score with."""

    exit_code = ExitCode.BAD_INPUT


class IntegrityError(MlopsError):
    """A model artifact does not match its registered checksum; nothing was scored."""

    exit_code = ExitCode.FAILED


class GitLabRefused(MlopsError):
    """GitLab refused a call the worker needs (token scope, role, project setting, rules)."""

    exit_code = ExitCode.BAD_INPUT
    status: int | None = None


class GitLabUnavailable(MlopsError):
    """GitLab did not answer (connection errors, timeouts, 429/5xx) after bounded retries."""

    exit_code = ExitCode.FAILED
