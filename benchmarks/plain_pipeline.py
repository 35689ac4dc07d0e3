"""The same stage functions as `mlops train`, called in a plain script: no Prefect, no MLflow.

The same ML work as the flow's first run of a model: validate, train, choose the threshold,
score the test set, explain it (tree SHAP on the same bounded sample), plot, gate, profile the
training rows for monitoring and save the booster. What it leaves out is what orchestration
and tracking add: Prefect, the MLflow run and registry, lineage, the report files.

Usage: python benchmarks/plain_pipeline.py CONFIG.yaml
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.batch.profiles import reference_profile  # noqa: E402
from tasks.contracts import explanations  # noqa: E402
from tasks.core.config import load_config  # noqa: E402
from tasks.core.tasktypes import task_type  # noqa: E402
from tasks.training.data import load_dataset  # noqa: E402
from tasks.training.evaluate import booster_scores, make_plots  # noqa: E402
from tasks.training.gate import decide  # noqa: E402
from tasks.training.metrics import evaluate_scores  # noqa: E402
from tasks.training.threshold import with_threshold  # noqa: E402
from tasks.training.train import feature_spec, split_rows, train_model  # noqa: E402
from tasks.training.validate import ensure_valid, validate_frame  # noqa: E402


def main(path: str) -> None:
    cfg = load_config(path, Path("configs/models"))
    data = load_dataset(cfg.data)
    report = ensure_valid(validate_frame(data.frame, cfg))
    spec = feature_spec(data.frame, report, cfg)
    splits = split_rows(spec.encode_target(data.frame[cfg.target]), cfg.training,
                        task_type(cfg.task))
    trained = train_model(data.frame, spec, splits, cfg.training, "cpu", "plain",
                          progress=lambda m: None)
    trained = with_threshold(trained, data.frame.iloc[splits.valid], cfg.threshold)
    spec = trained.feature_spec
    test = data.frame.iloc[splits.test]
    booster = trained.booster()
    scores = booster_scores(booster, spec, test)
    evaluation = evaluate_scores(spec, test, scores, cfg.slices, cfg.gate.min_slice_rows)
    contribs = explanations.contributions(booster, spec.matrix(explanations.sample(test)))
    evaluation = evaluation.model_copy(update={  # the report is frozen: built whole, as the flow does
        "attributions": explanations.mean_abs(contribs, spec.features, spec.classes)})
    decision = decide(evaluation, None, cfg.gate)
    train_rows = spec.matrix(data.frame.iloc[splits.train])
    reference_profile(train_rows, booster.inplace_predict(train_rows), spec.categories,
                      spec.classes, spec.task, cfg.monitoring.bins, evaluation.primary_metric,
                      evaluation.metrics.get(evaluation.primary_metric))
    with tempfile.TemporaryDirectory() as tmp:
        make_plots(spec, test, scores, booster, tmp, evaluation.attributions)
        booster.save_model(str(Path(tmp) / "model.ubj"))
    print(f"{cfg.name}: {cfg.gate.metric}={decision.value:.4f} gate={decision.summary()}")


if __name__ == "__main__":
    main(sys.argv[1])
