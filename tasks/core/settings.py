"""Environment settings: every variable docs/configuration.md documents, read here and nowhere else.

The model YAML says what a model is; this says where things run and with which credentials.
Secrets are kept out of reprs, so a settings object can be logged or passed to a task safely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.chain import Keyring
from tasks.core.errors import ConfigError
from tasks.core.laptop_key import laptop_key

DEVICES = ("auto", "cpu", "cuda")
# set once when a process starts (the CLI, or a worker's pull step), before MLflow is imported
PROCESS_DEFAULTS = {
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "ERROR",
    "MLFLOW_LOG_UV_FILES": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # MLflow would ask for /server-info before multipart transfers: GitLab has no such route
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
}
# GitLab's predefined CI variables the pipeline may read or record; never a token or password
CI_VARIABLES = (
    "CI_SERVER_URL", "CI_PROJECT_ID", "CI_PROJECT_PATH", "CI_PROJECT_URL", "CI_PROJECT_DIR",
    "CI_PIPELINE_ID", "CI_PIPELINE_URL", "CI_PIPELINE_SOURCE", "CI_JOB_ID", "CI_JOB_URL",
    "CI_MERGE_REQUEST_IID", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME", "CI_COMMIT_MESSAGE",
    "CI_COMMIT_TITLE", "CI_COMMIT_AUTHOR", "CI_DEFAULT_BRANCH", "GITLAB_USER_LOGIN",
    "TRAINING_DATA_DATE", "GITLAB_CI", "CI_COMMIT_REF_PROTECTED",
)
# the pipeline's identity travels to flow runs (wherever a worker runs them) as job variables,
# so the MR report and GitLab deployments land on this MR and commit; never a token
CI_FORWARDED = ("CI_SERVER_URL", "CI_PROJECT_ID", "CI_PROJECT_URL", "CI_MERGE_REQUEST_IID",
                "CI_PIPELINE_ID", "CI_PIPELINE_URL", "CI_JOB_ID", "CI_JOB_URL", "CI_COMMIT_SHA",
                "CI_COMMIT_REF_NAME", "CI_COMMIT_REF_PROTECTED")
SNOWFLAKE_VARIABLES = {
    "account": "SNOWFLAKE_ACCOUNT", "user": "SNOWFLAKE_USER", "password": "SNOWFLAKE_PASSWORD",
    "warehouse": "SNOWFLAKE_WAREHOUSE", "database": "SNOWFLAKE_DATABASE",
    "schema": "SNOWFLAKE_SCHEMA", "role": "SNOWFLAKE_ROLE", "host": "SNOWFLAKE_HOST",
    "port": "SNOWFLAKE_PORT", "protocol": "SNOWFLAKE_PROTOCOL",
}
# what a helper process (model server, notebook kernel) may inherit: no credentials
CHILD_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "VIRTUAL_ENV",
                   "PYTHONPATH", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    """MLOPS_DEBUG=1: keep tracebacks (read alone, so an error handler can always ask)."""
    return bool((os.environ if env is None else env).get("MLOPS_DEBUG"))


def _config_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("MLOPS_CONFIG_DIR", "configs/models"))


def configured_models(env: Mapping[str, str] | None = None) -> list[str]:
    """The model names under the config directory (MLOPS_CONFIG_DIR, default configs/models),
    sorted; none when it cannot be read. Flow parameter types list them when a flow module is
    imported, before any entry point has built the settings."""
    try:
        return sorted(p.stem for p in _config_dir(os.environ if env is None else env).glob("*.yaml"))
    except OSError:
        return []


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("MLOPS_HOME", ".mlops")).resolve()


def apply_process_defaults(extra: Mapping[str, str] | None = None,
                           env: dict[str, str] | None = None) -> None:
    """Set the process defaults where the user has not (their own values win). Only a process's
    entry point calls this: the CLI as it starts, a worker's pull step before the flow loads."""
    target = os.environ if env is None else env
    defaults = {
        **PROCESS_DEFAULTS,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # the very first temporary server creates its database, which takes ~30 s here
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOCAL_STORAGE_PATH": str(_home(target) / "prefect-results"),
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        **(extra or {}),
    }
    for key, value in defaults.items():
        target.setdefault(key, value)


def _secret_block(name: str) -> Any:
    from prefect.blocks.system import Secret

    from tasks.core.synced import synced
    return synced(Secret.load(name)).get()


@dataclass(frozen=True)
class GitLabSettings:
    """Where the project is and who we are: the CI variables GitLab sets plus a token."""

    url: str
    project_id: str
    token: str = field(default="", repr=False)
    token_block: str | None = None
    merge_request_iid: str | None = None
    pipeline_url: str | None = None
    job_url: str | None = None
    sha: str | None = None
    ref: str | None = None
    attempts: int = 3
    max_wait_s: float = 30.0

    def resolve_token(self) -> str:
        """The token itself, or the Prefect Secret block's value (loaded only when needed)."""
        if self.token or not self.token_block:
            return self.token
        return str(_secret_block(self.token_block))


@dataclass(frozen=True)
class SnowflakeSettings:
    variables: Mapping[str, str] = field(default_factory=dict, repr=False)
    block: str | None = None

    def connection(self) -> dict[str, Any]:
        """Connection parameters from SNOWFLAKE_* variables or a Secret block holding JSON."""
        params = dict(_secret_block(self.block)) if self.block else dict(self.variables)
        if "port" in params:
            params["port"] = int(params["port"])
        if "account" not in params and "host" not in params:
            raise ConfigError(
                "Snowflake needs SNOWFLAKE_ACCOUNT (and SNOWFLAKE_USER, SNOWFLAKE_PASSWORD) "
                "or MLOPS_SNOWFLAKE_BLOCK naming a Secret block")
        return params


def _int(env: Mapping[str, str], key: str, default: str, minimum: int = 1) -> int:
    value = env.get(key, default)
    if not value.isdigit() or int(value) < minimum:
        raise ConfigError(f"{key} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _float(env: Mapping[str, str], key: str, default: str) -> float:
    try:
        return float(env.get(key, default))
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {env.get(key)!r}") from None


@dataclass(frozen=True)
class Settings:
    home: Path
    tracking_uri: str
    config_dir: Path
    device: str
    optuna_storage: str | None = None
    tracking_retries: int = 3
    tracking_token: str = field(default="", repr=False)
    prefect_api_url: str | None = None
    debug: bool = False
    slack_block: str | None = None
    image: str | None = None
    image_name: str = "prefect-mlops-train"
    image_build: str = "auto"
    project_dir: str | None = None
    server_startup_s: float = 180.0
    cuda_visible_devices: str | None = None
    ci: Mapping[str, str] = field(default_factory=dict)
    gitlab: GitLabSettings | None = None
    snowflake: SnowflakeSettings = field(default_factory=SnowflakeSettings)
    child_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    user: str | None = None
    approver_token: str = field(default="", repr=False)
    audit_key: str = field(default="", repr=False)
    audit_key_block: str | None = None
    audit_keys_retired: tuple[str, ...] = field(default=(), repr=False)
    policy_path: Path = Path("configs/policy.yaml")
    data_urls: tuple[str, ...] = field(default=(), repr=False)
    data_urls_block: str | None = None
    prefect_port: int = 4200
    mlflow_port: int = 5000
    mlflow_ui: str | None = None
    use_local_stack: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings in env, or in this process's environment (then also kept as the ones
        its entry point read: see process_settings)."""
        global _ENTRY_POINTS
        if env is None:
            _ENTRY_POINTS = cls._read(os.environ)
            return _ENTRY_POINTS
        return cls._read(env)

    @classmethod
    def _read(cls, env: Mapping[str, str]) -> Settings:
        home = _home(env)
        device = env.get("MLOPS_DEVICE", "auto").lower()
        if device not in DEVICES:
            raise ConfigError(f"MLOPS_DEVICE must be one of {', '.join(DEVICES)}, got {device!r}")
        build = env.get("MLOPS_IMAGE_BUILD", "auto")
        if build not in ("auto", "always", "skip"):
            raise ConfigError(f"MLOPS_IMAGE_BUILD must be one of auto, always, skip, got {build!r}")
        return cls(
            home=home,
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
            config_dir=_config_dir(env),
            device=device,
            optuna_storage=env.get("MLOPS_OPTUNA_STORAGE") or None,
            tracking_retries=_int(env, "MLOPS_TRACKING_RETRIES", "3"),
            tracking_token=env.get("MLFLOW_TRACKING_TOKEN", ""),
            prefect_api_url=env.get("PREFECT_API_URL") or None,
            debug=debug_enabled(env),
            slack_block=env.get("MLOPS_SLACK_BLOCK") or None,
            image=env.get("MLOPS_IMAGE") or None,
            image_name=env.get("MLOPS_IMAGE_NAME") or "prefect-mlops-train",
            image_build=build,
            project_dir=env.get("MLOPS_PROJECT_DIR") or None,
            server_startup_s=_float(env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"),
            cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
            ci={k: env[k] for k in CI_VARIABLES if env.get(k)},
            gitlab=_gitlab(env),
            snowflake=SnowflakeSettings(
                {k: env[v] for k, v in SNOWFLAKE_VARIABLES.items() if env.get(v)},
                env.get("MLOPS_SNOWFLAKE_BLOCK") or None),
            child_env={k: env[k] for k in CHILD_VARIABLES if k in env},
            user=env.get("USER") or env.get("LOGNAME") or None,
            approver_token=env.get("MLOPS_APPROVER_TOKEN", ""),
            audit_key=env.get("MLOPS_AUDIT_KEY", ""),
            audit_key_block=env.get("MLOPS_AUDIT_KEY_BLOCK") or None,
            audit_keys_retired=tuple(k.strip() for k in env.get("MLOPS_AUDIT_KEYS_RETIRED",
                                                                "").split(",") if k.strip()),
            policy_path=Path(env.get("MLOPS_POLICY") or "configs/policy.yaml"),
            data_urls=tuple(env.get("MLOPS_DATA_URLS", "").split()),
            data_urls_block=env.get("MLOPS_DATA_URLS_BLOCK") or None,
            prefect_port=_int(env, "MLOPS_PREFECT_PORT", "4200"),
            mlflow_port=_int(env, "MLOPS_MLFLOW_PORT", "5000"),
            mlflow_ui=env.get("MLOPS_MLFLOW_UI_URL") or None,
            use_local_stack=env.get("MLOPS_LOCAL_STACK", "auto").lower() != "off",
        )

    def resolve_audit_key(self) -> Keyring | None:
        """The key that signs audit records (MLOPS_AUDIT_KEY or its Prefect Secret block), with
        the retired keys that still verify older records (MLOPS_AUDIT_KEYS_RETIRED); for the
        laptop's own store only, a key of its own under MLOPS_HOME."""
        current = self.audit_key or (str(_secret_block(self.audit_key_block))
                                     if self.audit_key_block else "")
        if not current and self.store_is_local:
            current = laptop_key(self.home)
        if not current:
            return None
        return Keyring(current.encode(), tuple(k.encode() for k in self.audit_keys_retired))

    @property
    def store_is_local(self) -> bool:
        """The tracking store is this laptop's own: a file store, or the local stack's MLflow
        server (`mlops server start`); any other server is shared, whatever its address."""
        uri = self.tracking_uri.rstrip("/")
        return not uri.startswith(("http://", "https://")) or uri in (
            f"http://127.0.0.1:{self.mlflow_port}", f"http://localhost:{self.mlflow_port}")

    def resolve_data_urls(self) -> tuple[str, ...]:
        """Data URLs holding credentials (MLOPS_DATA_URLS, whitespace-separated, and those in
        the Secret block MLOPS_DATA_URLS_BLOCK names); parameters carry their redacted form."""
        if not self.data_urls_block:
            return self.data_urls
        held = _secret_block(self.data_urls_block)
        return (*self.data_urls, *(held.split() if isinstance(held, str) else map(str, held)))

    @property
    def artifact_root(self) -> Path:
        return self.home / "artifacts"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def stack_dir(self) -> Path:
        """The local stack's pid files, logs and Prefect home (`mlops server`)."""
        return self.home / "stack"

    @property
    def mlflow_ui_url(self) -> str | None:
        """The MLflow UI: the tracking server itself, or the local stack's MLflow server."""
        if self.tracking_uri.startswith("http"):
            return self.tracking_uri.rstrip("/")
        return self.mlflow_ui.rstrip("/") if self.mlflow_ui else None

    @property
    def prefect_ui_url(self) -> str | None:
        api = self.prefect_api_url or ""
        return api.removesuffix("/").removesuffix("/api") if api.startswith("http") else None


_ENTRY_POINTS: Settings | None = None  # the settings this process's entry point read last


def process_settings() -> Settings:
    """The settings this process's entry point read (a flow, the CLI, a worker: the last
    `Settings.from_env()`), for code Prefect calls with its own arguments, before or after any
    entry point (a flow's failure hook): so a failed run is reported by the settings it ran
    with. Read now only where no entry point has read them."""
    return _ENTRY_POINTS if _ENTRY_POINTS is not None else Settings.from_env()


def data_urls() -> tuple[str, ...]:
    """The data URLs this process holds credentials for (see Settings.resolve_data_urls)."""
    return Settings.from_env().resolve_data_urls()


def _gitlab(env: Mapping[str, str]) -> GitLabSettings | None:
    """CI_SERVER_URL, CI_PROJECT_ID and a token (MLOPS_GITLAB_TOKEN, or a Prefect Secret block
    named by MLOPS_GITLAB_TOKEN_BLOCK); None when any is missing."""
    url, project = env.get("CI_SERVER_URL"), env.get("CI_PROJECT_ID")
    token, block = env.get("MLOPS_GITLAB_TOKEN", ""), env.get("MLOPS_GITLAB_TOKEN_BLOCK")
    if not (url and project and (token or block or env.get("MLOPS_APPROVER_TOKEN"))):
        return None
    return GitLabSettings(
        url=url.rstrip("/"), project_id=project, token=token, token_block=block or None,
        merge_request_iid=env.get("CI_MERGE_REQUEST_IID") or None,
        pipeline_url=env.get("CI_PIPELINE_URL"), job_url=env.get("CI_JOB_URL"),
        sha=env.get("CI_COMMIT_SHA"), ref=env.get("CI_COMMIT_REF_NAME"),
        attempts=_int(env, "MLOPS_GITLAB_ATTEMPTS", "3"),
        max_wait_s=_float(env, "MLOPS_GITLAB_MAX_WAIT_S", "30"))
