"""Shared fixtures: tiny configs and data so every tier runs in seconds."""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# a local stack left up by `make run` is the developer's, not the tests' (test_local_stack starts
# its own through cli_env, which drops MLOPS_* variables)
os.environ.setdefault("MLOPS_LOCAL_STACK", "off")
# production changes need signed audit records: tests sign them as production would
os.environ.setdefault("MLOPS_AUDIT_KEY", "test-audit-key")
# the tests train tiny models beside servers and CLI processes on a few cores: one OpenMP thread
# each (set before XGBoost loads; inherited by every process a test starts). Boosters are the same
# bytes for any thread count; oversubscribed threads spin and were 4-10x slower here.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import tempfile  # noqa: E402

# cached task results of one test session never leak into another
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="mlops-test-results-")

import textwrap  # noqa: E402

import pytest  # noqa: E402

from tasks.core.config import ModelConfig, parse_config  # noqa: E402
from tasks.training.synthetic import generate_claims  # noqa: E402

TARGETS = {"binary": "is_fraud", "multiclass": "damage_severity",
           "regression": "settlement_amount"}
METRIC = {"binary": ("roc_auc", 0.6), "multiclass": ("f1_macro", 0.3),
          "regression": ("rmse", 100000)}


def config_yaml(task: str = "binary", name: str | None = None, rows: int = 1500,
                n_trials: int = 2, extra: str = "", gate: str = "", data: str = "") -> str:
    target = TARGETS[task]
    others = [t for t in TARGETS.values() if t != target]
    metric, threshold = METRIC[task]
    data_block = data or f"data: {{source: synthetic, rows: {rows}}}"
    return textwrap.dedent(f"""\
        name: {name or 'tiny-' + task}
        task: {task}
        target: {target}
        exclude: [claim_id, {others[0]}, {others[1]}]
        categorical: [region, vehicle_type, claim_channel]
        slices: [region]
        {data_block}
        training: {{n_trials: {n_trials}, seed: 1, max_rounds: 60}}
        gate: {{metric: {metric}, threshold: {threshold}{gate}}}
        registry:
          tags: {{classification: internal, department: claims}}
          required_tags: [classification, department]
        """) + extra


def release_parts() -> dict:
    """What a CLI command or a flow run starting now hands the release stages: its settings,
    policy and audit key, read from the test's environment."""
    from tasks.core.runtime import Runtime
    from tasks.core.settings import Settings

    runtime = Runtime(Settings.from_env())
    return {"settings": runtime.settings, "policy": runtime.policy, "key": runtime.audit_key}


def without_audit_key(monkeypatch) -> None:
    """The process has no audit key, as on a machine without MLOPS_AUDIT_KEY whose store is
    shared (a laptop's own store would get a key of its own)."""
    from tasks.core.settings import Settings

    monkeypatch.delenv("MLOPS_AUDIT_KEY", raising=False)
    monkeypatch.setattr(Settings, "store_is_local", property(lambda self: False))


def crown(registry, model: str, version: str | None, alias: str = "champion",
          key: bytes | None = None) -> None:
    """What a promotion leaves behind, for tests that need a champion without the deploy flow:
    the alias and its signed record (scoring, monitoring and status read both). `key`: the
    audit key of the processes that read it (default: this process's)."""
    from tasks.adapters.audit_trail import event

    registry.move_alias(model, alias, version)
    trail_here(registry, model, **({"key": key} if key else {})).write(
        event("promoted", "production", None, version, "test", alias=alias))


def trail_here(registry, model: str, **given):
    """The model's audit trail as a process starting now opens it: this environment's settings
    (where the anchors are) and audit key, unless `given` names them (key=, anchors=, ...)."""
    from tasks.adapters.audit_trail import AuditTrail
    from tasks.core.settings import Settings

    found = Settings.from_env()
    if "key" not in given:
        given["key"] = found.resolve_audit_key()
    return AuditTrail(registry, model, settings=found, **given)


def signed_parts() -> dict:
    """What a CLI command or a flow run starting now hands register and promote: one signed
    context (settings, policy and audit key, read from the test's environment)."""
    from tasks.core.runtime import Runtime
    from tasks.core.settings import Settings

    return {"signed": Runtime(Settings.from_env()).signed}


@pytest.fixture
def make_config():
    def build(task: str = "binary", **kw) -> ModelConfig:
        return parse_config(config_yaml(task, **kw))

    return build


@pytest.fixture(scope="session")
def claims():
    return generate_claims(1500, seed=3)


@contextlib.contextmanager
def loopback_http(answer):
    """A threaded HTTP server on loopback whose GETs answer `answer(path)`, a (status, body)
    pair; yields its base URL. The tests' stand-in for a tracking server's odd answers."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            status, body = answer(self.path)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
