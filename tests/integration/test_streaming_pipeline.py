"""The training flow on a Parquet dataset folder, streamed in batches."""

from __future__ import annotations

import mlflow
import pytest

from flows.training import training_pipeline
from tasks.adapters.sinks import write_frame
from tasks.training.synthetic import generate_claims, write_parts

# whole training or deploy flows per test: `make test` runs this module, the quick subset
# (`make test-fast`) leaves it out (docs/testing.md)
pytestmark = pytest.mark.slow


def test_a_parquet_folder_trains_through_the_streaming_path(write_config, registry, home,
                                                           caplog):
    folder = home / "claims"
    write_parts(generate_claims(3000, seed=5), folder, 3, write_frame)
    name = write_config("streamed", "binary", data=f"data: {{source: file, path: '{folder}/'}}",
                        extra="threshold: {cost: {fp: 1, fn: 10}}\n")
    caplog.set_level("INFO")
    result = training_pipeline(name)
    assert result.version == "1" and result.gate == "passed"
    logs = caplog.text
    assert "in-core matrices built" in logs and "validation: 3,000 rows in 3 batches" in logs
    reg = registry()
    mv = reg.client.get_model_version_by_alias(name, "challenger")
    model = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    assert len(model.predict(model.input_example)) == len(model.input_example)
    assert float(mv.tags["decision_threshold"]) != 0.5
    profile = mlflow.artifacts.load_dict(f"models:/{name}/1/reference_profile.json")
    assert 1800 < profile["rows"] < 2050  # the training rows (64 % of 3000), counted in batches
    assert not any((home / "state" / "xgb-cache").glob("*"))
