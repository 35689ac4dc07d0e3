import numpy as np
import pytest
import xgboost as xgb

from tasks.core.device import select_device
from tasks.core.errors import ConfigError
from tasks.core.tasktypes import task_type
from tasks.training.boosting import base_params
from tasks.training.train import feature_spec, split_rows, train_model
from tasks.training.validate import validate_frame


def test_split_is_deterministic_disjoint_and_stratified(claims, make_config):
    cfg = make_config()
    y = claims.is_fraud.to_numpy()
    a = split_rows(y, cfg.training, task_type("binary"))
    b = split_rows(y, cfg.training, task_type("binary"))
    assert a == b
    assert not set(a.train) & set(a.test) and not set(a.valid) & set(a.test)
    assert len(a.train) + len(a.valid) + len(a.test) == len(y)
    assert abs(y[a.test].mean() - y.mean()) < 0.02


def test_device_auto_picks_cuda_when_present():
    assert select_device("auto", probe=lambda: True) == "cuda"
    assert select_device("auto", probe=lambda: False) == "cpu"
    assert select_device("cpu", probe=lambda: True) == "cpu"


def test_device_cuda_requested_without_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="MLOPS_DEVICE=cuda"):
        select_device("cuda", probe=lambda: False)


def test_selected_device_reaches_xgboost_params():
    params = base_params(task_type("multiclass"), 4, "cuda", 1)
    assert params["device"] == "cuda" and params["tree_method"] == "hist"
    assert params["num_class"] == 4 and params["objective"] == "multi:softprob"


def _fake_smi(monkeypatch, tmp_path, output: str):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho '{output}'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_cuda_probe_needs_a_gpu_and_a_cuda_build(monkeypatch, tmp_path):
    from tasks.core import device

    _fake_smi(monkeypatch, tmp_path, "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)")
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_CUDA": True})
    assert device.cuda_available() is True and device.select_device("auto") == "cuda"
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_CUDA": False})
    assert device.cuda_available() is False
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_CUDA": True})
    assert device.cuda_available(visible_devices="") is False
    assert device.cuda_available(visible_devices="-1") is False
    assert device.cuda_available(visible_devices="0") is True


def test_cuda_probe_without_nvidia_smi(monkeypatch, tmp_path):
    from tasks.core import device

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_CUDA": True})
    assert device.cuda_available() is False and device.select_device("auto") == "cpu"


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_training_is_deterministic(claims, make_config, tmp_path, task):
    cfg = make_config(task)
    report = validate_frame(claims, cfg)
    spec = feature_spec(claims, report, cfg)
    splits = split_rows(spec.encode_target(claims[cfg.target]), cfg.training, task_type(task))
    progress: list[str] = []
    r1 = train_model(claims, spec, splits, cfg.training, "cpu", "s1", progress=progress.append)
    r2 = train_model(claims, spec, splits, cfg.training, "cpu", "s2", progress=lambda m: None)
    assert r1.raw_booster() == r2.raw_booster() and r1.sha256() == r2.sha256()
    assert r1.params == r2.params and r1.best_value == r2.best_value
    assert progress[0].startswith("trial 1/2") and len(progress) == 2
    assert np.isfinite(r1.best_value) and r1.best_iteration >= 0


def test_shared_storage_runs_one_study_across_calls(claims, make_config, tmp_path):
    cfg = make_config()
    report = validate_frame(claims, cfg)
    spec = feature_spec(claims, report, cfg)
    splits = split_rows(spec.encode_target(claims[cfg.target]), cfg.training, task_type("binary"))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    train_model(claims, spec, splits, cfg.training, "cpu", "shared", storage,
                progress=lambda m: None)
    again = train_model(claims, spec, splits, cfg.training, "cpu", "shared", storage,
                        progress=lambda m: None)
    assert len(again.trials) == cfg.training.n_trials  # the second worker found the study done


def test_the_kept_best_trial_is_the_booster_a_refit_gives(claims, make_config):
    """Training keeps the best trial's booster instead of refitting: it must be the same bytes
    a refit of the best parameters gives (what training did before)."""
    from tasks.training.train import MAX_BIN

    cfg = make_config(n_trials=3)
    report = validate_frame(claims, cfg)
    spec = feature_spec(claims, report, cfg)
    y = spec.encode_target(claims[cfg.target])
    splits = split_rows(y, cfg.training, task_type("binary"))
    result = train_model(claims, spec, splits, cfg.training, "cpu", "kept", progress=lambda m: None)
    X = spec.matrix(claims)
    dtrain = xgb.QuantileDMatrix(X.iloc[splits.train], y[splits.train], enable_categorical=True,
                                 max_bin=MAX_BIN)
    dvalid = xgb.QuantileDMatrix(X.iloc[splits.valid], y[splits.valid], ref=dtrain,
                                 enable_categorical=True, max_bin=MAX_BIN)
    params = {**base_params(task_type("binary"), len(spec.classes), "cpu", cfg.training.seed),
              **result.params}
    refit = xgb.train(params, dtrain, num_boost_round=cfg.training.max_rounds,
                      evals=[(dvalid, "valid")], verbose_eval=False,
                      early_stopping_rounds=cfg.training.early_stopping_rounds)
    assert bytes(refit[: refit.best_iteration + 1].save_raw(raw_format="ubj")) == \
        result.raw_booster()
