"""Errors the CLI maps to exit codes: bad input is 2, a gate rejection 3, the rest 1 (drift is
not an error: `mlops monitor` exits 4 from its report)."""


class MlopsError(Exception):
    exit_code = 1


def retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry network hiccups, never a deliberate MlopsError."""
    return not isinstance(state.result(raise_on_failure=False), MlopsError)


class ConfigError(MlopsError):
    """The model YAML or the environment settings are wrong."""

    exit_code = 2


class DataError(MlopsError):
    """The data cannot be read or fails validation."""

    exit_code = 2


class GateRejected(MlopsError):
    """The model did not pass the performance gate; nothing was registered."""

    exit_code = 3


class TrackingUnavailable(MlopsError):
    """The MLflow tracking server could not be reached."""

    exit_code = 1


class RegistryError(MlopsError):
    """A registry operation was refused."""

    exit_code = 1


class LineageIncomplete(MlopsError):
    """A registered version lacks what a rebuild needs (lineage tags, a time-travel point)."""

    exit_code = 2


class UnknownVersion(MlopsError):
    """A model version the registry does not have (a typo in --version)."""

    exit_code = 2


class DeployError(MlopsError):
    """A deployment step failed or was refused; aliases are back where they were."""

    exit_code = 1


class PolicyRefused(MlopsError):
    """The organisation policy refuses a version in an environment (tags, classification or a
    check); the refusal is an audit record naming the rule, and no alias moved."""

    exit_code = 2


class TrailMismatch(MlopsError):
    """A live alias is not where the signed audit trail says it is (moved outside the
    pipeline): nothing reads or moves production until it is put back."""

    exit_code = 2


class ApprovalError(MlopsError):
    """An approval that cannot be accepted (unlisted approver, unknown version)."""

    exit_code = 2


class ScoringError(MlopsError):
    """Scoring cannot start: no champion to score with."""

    exit_code = 2


class IntegrityError(MlopsError):
    """A model artifact does not match its registered checksum; nothing was scored."""

    exit_code = 1


class GitLabRefused(MlopsError):
    """GitLab refused a call the worker needs (token scope, role, project setting, rules)."""

    exit_code = 2
    status: int | None = None


class GitLabUnavailable(MlopsError):
    """GitLab did not answer (connection errors, timeouts, 429/5xx) after bounded retries."""

    exit_code = 1
