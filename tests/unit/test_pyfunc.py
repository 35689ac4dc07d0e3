"""A plain `mlflow.pyfunc.load_model(uri).predict(input_example)` works for every task type."""

import mlflow
import numpy as np
import pytest

from tasks.core.tasktypes import task_type
from tasks.training.register import build_model_dir, input_example
from tasks.training.train import feature_spec, split_rows, train_model
from tasks.training.validate import validate_frame


@pytest.fixture(scope="module")
def built(tmp_path_factory, claims):
    from tasks.core.config import parse_config
    from tests.conftest import config_yaml

    out = {}
    for task in ("binary", "multiclass", "regression"):
        cfg = parse_config(config_yaml(task, n_trials=1))
        tmp = tmp_path_factory.mktemp(task)
        report = validate_frame(claims, cfg)
        spec = feature_spec(claims, report, cfg)
        splits = split_rows(spec.encode_target(claims[cfg.target]), cfg.training, task_type(task))
        trained = train_model(claims, spec, splits, cfg.training, "cpu", "s",
                              progress=lambda m: None)
        example = input_example(claims.iloc[splits.test], spec)
        out[task] = (build_model_dir(trained, example, tmp / "model", "# card\n"), spec)
    return out


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_plain_pyfunc_predicts_input_example(built, task):
    model_dir, spec = built[task]
    model = mlflow.pyfunc.load_model(str(model_dir))
    example = model.input_example
    pred = model.predict(example)
    assert len(pred) == len(example) and "prediction" in pred
    if task == "binary":
        assert pred.probability.between(0, 1).all()
        assert set(pred.prediction) <= {"0", "1"}
    elif task == "multiclass":
        probs = pred[[f"probability_{c}" for c in spec.classes]].to_numpy()
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
        assert set(pred.prediction) <= set(spec.classes)
    else:
        assert np.isfinite(pred.prediction).all()


def test_model_folder_has_no_pickle_and_a_native_booster(built):
    model_dir, _ = built["binary"]
    files = {p.name for p in model_dir.rglob("*") if p.is_file()}
    assert any(name.endswith(".ubj") for name in files)
    assert not any(name.endswith((".pkl", ".pickle", ".cloudpickle")) for name in files)
    assert "model_card.md" in files


def test_unseen_category_and_extra_columns_are_tolerated(built, claims):
    model_dir, spec = built["binary"]
    model = mlflow.pyfunc.load_model(str(model_dir))
    rows = model.input_example.copy()
    rows.loc[0, "region"] = "atlantis"
    pred = model.predict(rows)
    assert pred.probability.notna().all()


def test_missing_feature_is_an_error(built):
    model_dir, _ = built["regression"]
    model = mlflow.pyfunc.load_model(str(model_dir))
    with pytest.raises(Exception, match="claim_amount"):
        model.predict(model.input_example.drop(columns=["claim_amount"]))


def test_rows_in_training_dtypes_are_accepted(built, claims):
    model_dir, spec = built["binary"]
    model = mlflow.pyfunc.load_model(str(model_dir))
    raw = claims.drop(columns=["is_fraud"]).head(3)  # ints stay ints, extra columns ignored
    assert len(model.predict(raw)) == 3
