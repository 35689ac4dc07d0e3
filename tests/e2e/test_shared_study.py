"""Two processes tune one Optuna study through PostgreSQL storage and stop together."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from tests.e2e.conftest import REPO, cli_env, postgres_database

pytestmark = pytest.mark.slow

WORKER = """
import sys
from tests.conftest import config_yaml
from tasks.core.config import parse_config
from tasks.training.synthetic import generate_claims
from tasks.core.tasktypes import task_type
from tasks.training.train import feature_spec, split_rows, train_model
from tasks.training.validate import validate_frame

cfg = parse_config(config_yaml(n_trials=8, rows=3000))
df = generate_claims(3000, seed=3)
spec = feature_spec(df, validate_frame(df, cfg), cfg)
splits = split_rows(spec.encode_target(df[cfg.target]), cfg.training, task_type("binary"))
result = train_model(df, spec, splits, cfg.training, "cpu", "shared-study", sys.argv[1],
                     progress=lambda m: print(m, flush=True))
print("best", result.best_value)
"""


def test_two_workers_share_one_study(tmp_path):
    with postgres_database("optuna_e2e") as uri:
        storage = uri.replace("postgresql://", "postgresql+psycopg://")
        optuna.create_study(study_name="shared-study", storage=storage, direction="minimize")
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, storage], cwd=REPO,
                                  env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=900) for p in procs]  # a loaded machine is slow
        assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outputs]
        study = optuna.load_study(study_name="shared-study", storage=storage)
        finished = [t for t in study.trials if t.state.is_finished()]
        assert 8 <= len(finished) <= 9  # a trial already running when the limit is hit completes
        per_worker = [out.count("trial ") for out, _ in outputs]
        assert all(n > 0 for n in per_worker), per_worker
        optuna.delete_study(study_name="shared-study", storage=storage)
