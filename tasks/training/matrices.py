"""XGBoost matrices built from batches: an in-core QuantileDMatrix (compressed, about a byte per
value) from a DataIter over a table's train and validation rows, or ExtMemQuantileDMatrix with
its pages on disk when the table is above the memory budget."""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from tasks.contracts.training import FeatureSpec
from tasks.core.config import TrainingSpec
from tasks.training.batches import TRAIN, VALID, BatchTable

if TYPE_CHECKING:
    import xgboost as xgb

Progress = Callable[[str], None]
EXTERNAL_MEMORY_PAGE_ROWS = 131_072  # rows of one page on disk: few pages, fast training


class FrameIterClass(Protocol):
    """FrameIter's constructor, as frame_iter_class hands it out."""

    def __call__(self, frames: Callable[[], Iterator[pd.DataFrame]], spec: FeatureSpec,
                 cache_prefix: str | None = None, page_rows: int = 0) -> xgb.DataIter: ...


@functools.cache
def frame_iter_class() -> FrameIterClass:
    """FrameIter, an xgboost.DataIter: defined on first use, so that importing this module (as
    the training flow does on a cached or reused run) does not import XGBoost."""
    import xgboost as xgb

    class FrameIter(xgb.DataIter):
        """Feeds XGBoost a table's rows (features and encoded target) a page at a time: one
        batch, or batches joined up to page_rows (external memory: reading small batches keeps
        memory low, few large pages keep training fast)."""

        def __init__(self, frames: Callable[[], Iterator[pd.DataFrame]], spec: FeatureSpec,
                     cache_prefix: str | None = None, page_rows: int = 0):
            super().__init__(cache_prefix=cache_prefix, release_data=True)
            self._frames, self._spec, self._page_rows = frames, spec, page_rows
            self._it: Any = None  # the generator of the current pass

        def reset(self) -> None:
            if self._it is not None:
                self._it.close()
            self._it = None

        def next(self, input_data: Callable) -> bool:
            if self._it is None:
                self._it = self._frames()
            features, labels, rows = [], [], 0
            for frame in self._it:
                if len(frame):
                    features.append(self._spec.matrix(frame))
                    labels.append(self._spec.encode_target(frame[self._spec.target]))
                    rows += len(frame)
                    if rows >= self._page_rows:
                        break
            if not features:
                return False
            input_data(data=features[0] if len(features) == 1
                       else pd.concat(features, ignore_index=True),
                       label=np.concatenate(labels))
            return True

    return FrameIter


def external_memory(table: BatchTable, training: TrainingSpec) -> bool:
    """External memory when asked, or when the table (uncompressed) is above the budget."""
    return external_memory_above(table.estimated_bytes, training)


def external_memory_above(estimated_bytes: int, training: TrainingSpec) -> bool:
    """Whether a table of this size (uncompressed) trains from external memory."""
    if training.external_memory:
        return True
    return training.memory_budget is not None and estimated_bytes > training.memory_budget


@contextmanager
def stream_matrices(table: BatchTable, spec: FeatureSpec, training: TrainingSpec, max_bin: int,
                    cache_root: Path, progress: Progress = logging.getLogger("mlops.train").info
                    ) -> Iterator[tuple[xgb.DMatrix, xgb.DMatrix]]:
    """Train and validation matrices from the table's batches; the validation matrix is binned
    by the training one's cuts. External memory pages live in a folder under cache_root that
    is removed when the block ends, whatever happens."""
    import xgboost as xgb  # here, not at import: a cached or reused run never builds matrices

    FrameIter = frame_iter_class()
    ext = external_memory(table, training)
    began = time.perf_counter()
    cache = None
    if ext:
        cache_root.mkdir(parents=True, exist_ok=True)
        cache = Path(tempfile.mkdtemp(prefix="xgb-extmem-", dir=cache_root))
    try:
        train_it = FrameIter(lambda: table.frames(TRAIN, "train matrix"), spec,
                             cache_prefix=str(cache / "train") if cache else None,
                             page_rows=EXTERNAL_MEMORY_PAGE_ROWS if ext else 0)
        valid_it = FrameIter(lambda: table.frames(VALID, "validation matrix"), spec)
        if ext:
            dtrain: xgb.DMatrix = xgb.ExtMemQuantileDMatrix(train_it, max_bin=max_bin,
                                                            enable_categorical=True)
        else:
            dtrain = xgb.QuantileDMatrix(train_it, max_bin=max_bin, enable_categorical=True)
        dvalid = xgb.QuantileDMatrix(valid_it, ref=dtrain, max_bin=max_bin,
                                     enable_categorical=True)
        progress(f"{'external-memory' if ext else 'in-core'} matrices built: "
                 f"{dtrain.num_row():,} train rows, {dvalid.num_row():,} validation rows "
                 f"({time.perf_counter() - began:.1f}s)")
        yield dtrain, dvalid
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
