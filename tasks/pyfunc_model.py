"""MLflow pyfunc model (logged as code, not pickled): an XGBoost booster in its native format.

Self-contained on purpose: MLflow copies this file into every model version, so a plain
`mlflow.pyfunc.load_model(uri).predict(frame)` works without this project installed.
Categorical columns arrive as strings (that is what the signature records) and are turned
back into pandas categories with the training categories before building the DMatrix.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd


def to_matrix(frame: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Select the model's features in training order with training categories; extras are ignored."""
    missing = [c for c in spec["features"] if c not in frame.columns]
    if missing:
        raise ValueError(f"input is missing feature column(s): {', '.join(missing)}")
    out = {}
    for col in spec["features"]:
        values = frame[col]
        if col in spec["categories"]:
            text = values.astype("string").where(values.notna())
            out[col] = pd.Categorical(text, categories=spec["categories"][col])
        else:
            out[col] = pd.to_numeric(values, errors="raise").astype("float32")
    return pd.DataFrame(out, index=frame.index)


def predictions_frame(raw: np.ndarray, spec: dict) -> pd.DataFrame:
    """Turn booster output into the model's public prediction columns."""
    if spec["task"] == "regression":
        return pd.DataFrame({"prediction": raw.astype(float)})
    classes = spec["classes"]
    if spec["task"] == "binary":
        return pd.DataFrame({"prediction": np.where(raw >= 0.5, classes[1], classes[0]),
                             "probability": raw.astype(float)})
    frame = pd.DataFrame({f"probability_{c}": raw[:, i].astype(float) for i, c in enumerate(classes)})
    frame.insert(0, "prediction", np.asarray(classes)[raw.argmax(axis=1)])
    return frame


class XGBoostNativeModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import xgboost as xgb

        with open(context.artifacts["feature_spec"]) as fh:
            self.spec = json.load(fh)
        self.booster = xgb.Booster()
        self.booster.load_model(context.artifacts["booster"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None
                ) -> pd.DataFrame:
        import xgboost as xgb

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        matrix = xgb.DMatrix(to_matrix(frame, self.spec), enable_categorical=True)
        return predictions_frame(self.booster.predict(matrix), self.spec)


mlflow.models.set_model(XGBoostNativeModel())
