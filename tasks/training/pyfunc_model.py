"""MLflow pyfunc model (logged as code, not pickled): an XGBoost booster in its native format.

MLflow copies this file into every model version, with three artifacts: the booster (UBJSON),
the feature spec (JSON) and the prediction table (`tasks/contracts/predictions.py`). The table
is loaded from the version's own copy, so a plain `mlflow.pyfunc.load_model(uri).predict(frame)`
works without this project installed and a version keeps the rules it was approved with.
Categorical columns arrive as strings (that is what the signature records) and are turned back
into pandas categories with the training categories before building the DMatrix.
"""

from __future__ import annotations

import importlib.util
import json

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel


def load_table(path: str):
    """The prediction table module from a file, under a name no other model shares."""
    spec = importlib.util.spec_from_file_location(f"_mlops_predictions_{id(path)}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class XGBoostNativeModel(PythonModel):
    def load_context(self, context):
        import xgboost as xgb

        with open(context.artifacts["feature_spec"]) as fh:
            self.spec = json.load(fh)
        self.table = load_table(context.artifacts["prediction_table"])
        self.booster = xgb.Booster()
        self.booster.load_model(context.artifacts["booster"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None
                ) -> pd.DataFrame:
        import xgboost as xgb

        spec = self.spec
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        matrix = self.table.to_matrix(frame, spec["features"], spec["categories"])
        raw = self.booster.predict(xgb.DMatrix(matrix, enable_categorical=True))
        return self.table.predictions_frame(raw, spec["task"], spec["classes"],
                                            spec.get("threshold"))


mlflow.models.set_model(XGBoostNativeModel())
