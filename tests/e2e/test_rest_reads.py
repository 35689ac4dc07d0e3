"""The read-only commands' REST reader (tasks/adapters/mlflow_rest.py) reads what MlflowClient
reads, on the same `mlflow server` and on GitLab's MLflow API (the fake of tests/fakes/, both
behaviours): the same audit records (deleted ones too), the same verdict of the chain, the same
versions, aliases and runs; and the commands that use it import neither MLflow nor Prefect nor
the training stack, and show no token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, cli_env, mlops
from tests.fakes.gitlab_mlflow import MODES, serve

pytestmark = pytest.mark.slow
KEY = b"e2e-audit-key"


def fill(uri: str, model: str, home: Path) -> None:
    """An audit trail of four records, one of them deleted, a version with an alias, a run."""
    from tasks.adapters import audit_anchor
    from tasks.adapters.audit_trail import AuditTrail, event
    from tasks.adapters.mlflow_registry import Registry

    registry = Registry(uri)
    trail = AuditTrail(registry, model, key=KEY,
                       anchors=[audit_anchor.FileAnchor(home, model, audit_anchor.store_id(uri))])
    for i in range(1, 5):
        trail.write(event("challenger", "staging", None, str(i), "pipeline", alias="challenger"))
    experiment = registry.client.get_experiment_by_name(f"audit/{model}")
    runs = registry.client.search_runs([experiment.experiment_id])
    registry.client.delete_run(runs[0].info.run_id)  # a removal shows as `deleted`
    with registry.run(model, "train", {"model": model}) as run_id:
        registry.log_run(run_id, params={"lr": "0.1"}, metrics={"test_roc_auc": 0.91})
    registry.ensure_registered_model(model)
    source = f"{registry.client.get_run(run_id).info.artifact_uri}/model"
    for _ in range(2):
        registry.client.create_model_version(model, source=source, run_id=run_id,
                                             tags={"gate_metric": "roc_auc"})
    registry.move_alias(model, "challenger", "2")


def snapshot(registry, model: str, home: Path, version: str = "2") -> dict:
    from tasks.adapters import audit_anchor, audit_store
    from tasks.adapters.audit_trail import AuditTrail

    trail = AuditTrail(registry, model, key=KEY, anchors=[
        audit_anchor.FileAnchor(home, model, audit_anchor.store_id(registry.uri))])
    runs = registry.all_runs(registry.training_experiment(model))
    return {
        "stored": audit_store.read(registry, model),
        "created": audit_store.created(registry, model),
        "records": trail.records(), "events": trail.events(), "voided": trail.voided(),
        "problems": trail.problems({"challenger": registry.alias_version(model, "challenger"),
                                    "champion": registry.alias_version(model, "champion")}),
        "versions": registry.versions(model),
        "version": registry.get_version(model, version), "version 9": registry.get_version(model, "9"),
        "runs": [(r.info.run_id, r.info.status, r.info.start_time, r.info.experiment_id,
                  dict(r.data.params), dict(r.data.metrics), dict(r.data.tags)) for r in runs],
        "params": registry.run_params(runs[0].info.run_id),
        "metrics": registry.run_metrics(runs[0].info.run_id),
        "missing": (registry.all_runs("no-such-experiment"), registry.versions("no-such-model"),
                    registry.alias_version("no-such-model", "champion")),
    }


def test_rest_reads_equal_mlflow_client_reads_on_the_same_server(mlflow_sqlite_server, tmp_path):
    from tasks.adapters.mlflow_registry import Registry
    from tasks.adapters.mlflow_rest import RestRegistry

    url, store = mlflow_sqlite_server
    fill(url, "rest-reads", tmp_path)
    through_client = snapshot(Registry(url), "rest-reads", tmp_path)
    through_rest = snapshot(RestRegistry(url), "rest-reads", tmp_path)
    assert through_rest == through_client
    assert any(r.get("deleted") for r in through_rest["stored"])
    assert through_rest["problems"]  # the deleted record is named, the same way by both
    # the server's SQLite file opened directly, against the same file read through the server
    assert (snapshot(RestRegistry(store, endpoint=url), "rest-reads", tmp_path)
            == snapshot(Registry(store), "rest-reads", tmp_path))


READ_ONLY = """
import json, sys
from mlops.cli import main
for args in (["history", "rest-cli"], ["audit", "verify", "rest-cli"], ["status", "rest-cli"],
             ["models"], ["check-config", "rest-cli"], ["server", "status"]):
    sys.argv = ["mlops", *args]
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, 1, None):  # 1: a server or worker of no local stack is down
            raise
    print(json.dumps([args[0], sorted({m.split(".")[0] for m in sys.modules})]))
"""


def test_read_only_commands_on_a_tracking_server_import_no_mlflow_prefect_or_training(
        mlflow_sqlite_server, prefect_server, tmp_path):
    """The read-only commands against an MLflow server and a Prefect server read both over
    REST: no mlflow, prefect, xgboost or matplotlib in sys.modules (module presence, not
    time)."""
    url, _ = mlflow_sqlite_server
    configs = tmp_path / "configs"
    configs.mkdir()
    text = (REPO / "configs" / "models" / "fraud.yaml").read_text()
    (configs / "rest-cli.yaml").write_text(text.replace("name: fraud", "name: rest-cli"))
    env = cli_env(MLFLOW_TRACKING_URI=url, MLOPS_HOME=str(tmp_path / "home"),
                  MLOPS_CONFIG_DIR=str(configs), MLOPS_DEVICE="cpu",
                  PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "prefect"))
    proc = subprocess.run([sys.executable, "-c", READ_ONLY], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = dict(json.loads(line) for line in proc.stdout.splitlines() if line.startswith('["'))
    assert set(loaded) == {"history", "audit", "status", "models", "check-config", "server"}
    for command, modules in loaded.items():
        assert {"mlflow", "prefect", "xgboost", "matplotlib"} & set(modules) == set(), command


@pytest.fixture(params=MODES)
def gitlab(request, monkeypatch):
    """GitLab's MLflow API (tests/fakes/gitlab_mlflow.py), older and newer behaviour; the token
    in MLFLOW_TRACKING_TOKEN for the full registry's MlflowClient."""
    yield from serve(request.param, monkeypatch)


def fill_gitlab(fake, model: str, home: Path) -> None:
    """Through the full GitLab registry, as the pipeline writes: two versions registered by two
    training runs, an audit trail of four records moving the challenger alias."""
    from tasks.adapters import audit_anchor
    from tasks.adapters.audit_trail import AuditTrail, event
    from tasks.adapters.gitlab_mlflow import GitLabRegistry

    registry = GitLabRegistry(fake.url, audit_key=KEY)
    (home / "model").mkdir(parents=True)
    (home / "model" / "MLmodel").write_text("flavors: {}\n")
    for key in ("a", "b"):
        with registry.run(registry.training_experiment(model), "train", {"run_key": key}) as run:
            registry.log_run(run, params={"lr": "0.1"}, metrics={"test_roc_auc": 0.91})
            registry.register(model, run, home / "model", {"run_key": key, "gate_metric": "roc_auc"},
                              "trained")
    trail = AuditTrail(registry, model, key=KEY,
                       anchors=[audit_anchor.FileAnchor(home, model, audit_anchor.store_id(fake.url))])
    for version in ("1.0.0", "1.0.1", "1.0.0", "1.0.1"):
        trail.write(event("challenger", "staging", None, version, "pipeline", alias="challenger"))


def test_rest_reads_equal_the_full_registry_on_gitlabs_mlflow_api(gitlab, tmp_path):
    """GitLab's rules (semantic versions, versions from the training runs' tags, aliases from the
    signed chain) read over REST give what GitLabRegistry gives, intact and after a record was
    removed (GitLab deletes a run outright)."""
    from mlflow import MlflowClient

    from tasks.adapters.gitlab_mlflow import GitLabRegistry, GitLabRestRegistry

    fill_gitlab(gitlab, "glreads", tmp_path)
    full = GitLabRegistry(gitlab.url, audit_key=KEY)
    rest = GitLabRestRegistry(gitlab.url, gitlab.token, audit_key=KEY)
    intact = snapshot(full, "glreads", tmp_path, version="1.0.1")
    assert snapshot(rest, "glreads", tmp_path, version="1.0.1") == intact
    assert intact["problems"] == [] and len(intact["records"]) == 4
    assert [v.version for v in intact["versions"]] == ["1.0.0", "1.0.1"]
    trained = {r[6].get("run_key"): r[0] for r in intact["runs"]}
    assert intact["version"].run_id == trained["b"]  # the training run, as GitLab's tag names it
    assert rest.alias_version("glreads", "challenger") == "1.0.1"

    client = MlflowClient(gitlab.url, gitlab.url)
    audit = client.get_experiment_by_name("audit/glreads").experiment_id
    second = next(r for r in client.search_runs([audit]) if r.data.params.get("seq") == "2")
    client.delete_run(second.info.run_id)
    broken = snapshot(full, "glreads", tmp_path, version="1.0.1")
    assert snapshot(rest, "glreads", tmp_path, version="1.0.1") == broken
    assert broken["problems"] and len(broken["stored"]) == 3
    assert not [c for c in gitlab.calls if c[2] == 404 and "/ml/mlflow/" in c[1]
                and not c[1].endswith(("/experiments/get-by-name", "/registered-models/get",
                                       "/model-versions/get"))]
    assert gitlab.refused == []  # nothing GitLab lacks was asked for


def test_read_only_commands_on_gitlabs_mlflow_api_import_no_mlflow_and_show_no_token(
        gitlab, prefect_server, tmp_path):
    """`history`, `audit verify` and `status` against GitLab's MLflow API read it over REST:
    no mlflow, prefect, xgboost or matplotlib in sys.modules; the token shows nowhere, nor in
    the one-line error of a refused token."""
    fill_gitlab(gitlab, "rest-cli", tmp_path)
    configs = tmp_path / "configs"
    configs.mkdir()
    text = (REPO / "configs" / "models" / "fraud.yaml").read_text()
    (configs / "rest-cli.yaml").write_text(text.replace("name: fraud", "name: rest-cli"))
    env = cli_env(MLFLOW_TRACKING_URI=gitlab.url, MLFLOW_TRACKING_TOKEN=gitlab.token,
                  MLOPS_HOME=str(tmp_path), MLOPS_CONFIG_DIR=str(configs),
                  MLOPS_DEVICE="cpu", PREFECT_API_URL=prefect_server,
                  PREFECT_HOME=str(tmp_path / "prefect"))
    proc = subprocess.run([sys.executable, "-c", READ_ONLY], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = dict(json.loads(line) for line in proc.stdout.splitlines() if line.startswith('["'))
    assert {"history", "audit", "status"} <= set(loaded)
    for command in ("history", "audit", "status"):
        assert {"mlflow", "prefect", "xgboost", "matplotlib"} & set(loaded[command]) == set(), \
            command
    assert "-> 1.0.1" in proc.stdout and "@challenger v1.0.1" in proc.stdout
    assert gitlab.token not in proc.stdout + proc.stderr

    env["MLFLOW_TRACKING_TOKEN"] = "glpat-wrong-token"
    refused = mlops(["history", "rest-cli"], env)
    assert refused.returncode != 0
    assert "401" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert "glpat-wrong-token" not in refused.stdout + refused.stderr
    env.pop("MLFLOW_TRACKING_TOKEN")
    missing = mlops(["audit", "verify", "rest-cli"], env)
    assert missing.returncode == 2 and "MLFLOW_TRACKING_TOKEN" in missing.stderr


CACHED_TRAIN = """
import json, sys
from mlops.cli import main
sys.argv = ["mlops", "train", "rest-train"]
try:
    main()
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
print(json.dumps(["train", sorted({m.split(".")[0] for m in sys.modules})]))
"""


@pytest.fixture(scope="module")
def trained(mlflow_sqlite_server, prefect_server, tmp_path_factory):
    """Model rest-train trained once by `mlops train` against the MLflow server; what the
    up-to-date check said before it (a store that has never seen the model), through the MLflow
    client and over REST; and the environment of the run."""
    from tests.conftest import config_yaml

    url, store = mlflow_sqlite_server
    root = tmp_path_factory.mktemp("rest-train")
    configs = root / "configs"
    configs.mkdir()
    (configs / "rest-train.yaml").write_text(config_yaml(name="rest-train", rows=1500))
    env = cli_env(MLFLOW_TRACKING_URI=url, MLOPS_HOME=str(root / "home"),
                  MLOPS_CONFIG_DIR=str(configs), MLOPS_DEVICE="cpu",
                  PREFECT_API_URL=prefect_server, PREFECT_HOME=str(root / "prefect"))
    fresh = verdicts(configs / "rest-train.yaml", env, url, store)
    first = subprocess.run([str(Path(sys.executable).parent / "mlops"), "train", "rest-train"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    return {"env": env, "configs": configs, "fresh": fresh, "root": root}


def verdicts(path: Path, env: dict[str, str], url: str, store: str) -> list:
    """up_to_date's answer for the config at path through MlflowClient and over REST, on the
    server and on its SQLite file opened directly / read through the server."""
    from tasks.adapters.mlflow_registry import Registry
    from tasks.adapters.mlflow_rest import RestRegistry
    from tasks.core.config import parse_config
    from tasks.core.settings import Settings
    from tasks.training.fingerprint import up_to_date

    cfg = parse_config(path.read_text(), origin=str(path))
    found = Settings.from_env(env)
    return [up_to_date(cfg, found, registry) for registry in (
        Registry(url), RestRegistry(url), Registry(store), RestRegistry(store, endpoint=url))]


def test_the_up_to_date_verdict_over_rest_equals_the_mlflow_client_verdict(
        trained, mlflow_sqlite_server, monkeypatch):
    """The same verdict, the same version, for a store that never saw the model, the trained
    model, a changed config, a changed data seed and a changed code fingerprint; and the lowest
    of two versions with the same run key."""
    from tasks.adapters.mlflow_registry import Registry
    from tasks.training import fingerprint

    url, store = mlflow_sqlite_server
    env, configs = trained["env"], trained["configs"]
    assert trained["fresh"] == [None] * 4
    shipped = configs / "rest-train.yaml"
    text = shipped.read_text()
    now = verdicts(shipped, env, url, store)
    assert now[0] is not None and now[0].version == "1" and now[0].tags["run_key"]
    assert now == [now[0]] * 4

    changed = {"config": text.replace("max_rounds: 60", "max_rounds: 61"),
               "data seed": text.replace("rows: 1500}", "rows: 1500, seed: 8}")}
    for what, edited in changed.items():
        assert edited != text, what
        path = configs / f"changed-{what.replace(' ', '-')}.yaml"
        path.write_text(edited)
        assert verdicts(path, env, url, store) == [None] * 4, what

    with monkeypatch.context() as patched:
        patched.setattr(fingerprint, "code_hash", lambda: "f" * 64)
        assert verdicts(shipped, env, url, store) == [None] * 4

    registry = Registry(url)  # a second version registered with the same run key: v1 still
    registry.client.create_model_version("rest-train", source=now[0].source,
                                         run_id=now[0].run_id, tags=now[0].tags)
    assert len(registry.versions("rest-train")) == 2
    assert verdicts(shipped, env, url, store) == [now[0]] * 4


def test_a_cached_train_on_a_tracking_server_imports_no_mlflow_prefect_or_training(
        trained, mlflow_sqlite_server, prefect_server):
    """`mlops train` of an up-to-date model, as a process, reads the registry over REST: where
    the tracking URI is the server's, and where the local stack's server serves the SQLite
    store (stack.json says which); no mlflow, prefect, xgboost or matplotlib in sys.modules."""
    url, store = mlflow_sqlite_server
    stack = trained["root"] / "stack-home"
    (stack / "stack").mkdir(parents=True)
    (stack / "stack" / "stack.json").write_text(json.dumps(
        {"prefect_api_url": prefect_server, "mlflow_url": url, "mlflow_store": store}))
    served = {**trained["env"], "MLFLOW_TRACKING_URI": store, "MLOPS_HOME": str(stack)}
    for env in (trained["env"], served):
        proc = subprocess.run([sys.executable, "-c", CACHED_TRAIN], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "rest-train: up to date (v1" in proc.stdout, proc.stdout[-2000:]
        loaded = dict(json.loads(line) for line in proc.stdout.splitlines()
                      if line.startswith('["'))
        assert {"mlflow", "prefect", "xgboost", "matplotlib"} & set(loaded["train"]) == set(), \
            env["MLFLOW_TRACKING_URI"]
