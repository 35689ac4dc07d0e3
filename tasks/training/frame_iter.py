"""The XGBoost DataIter that feeds a table's batches to a matrix. Its own module because it
subclasses xgboost.DataIter: importing it imports XGBoost, which only building matrices needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd
import xgboost as xgb

from tasks.contracts.training import FeatureSpec


class FrameIter(xgb.DataIter):
    """Feeds XGBoost one batch of a table's rows at a time (features and encoded target)."""

    def __init__(self, frames: Callable[[], Iterator[pd.DataFrame]], spec: FeatureSpec,
                 cache_prefix: str | None = None):
        super().__init__(cache_prefix=cache_prefix, release_data=True)
        self._frames, self._spec, self._it = frames, spec, None

    def reset(self) -> None:
        if self._it is not None:
            self._it.close()
        self._it = None

    def next(self, input_data: Callable) -> bool:
        if self._it is None:
            self._it = self._frames()
        for frame in self._it:
            if len(frame):
                input_data(data=self._spec.matrix(frame),
                           label=self._spec.encode_target(frame[self._spec.target]))
                return True
        return False
