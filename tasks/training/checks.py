"""What validation needs to know of a table, counted batch by batch: per column nulls, distinct
values, finite range, infinities and text in numbers; the target's classes; duplicate rows; and
the sums a correlation with the target needs. One frame or many give the same facts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

UNIQUE_CAP = 10_000  # distinct values kept per non-categorical column; beyond, "at least"


def numeric_dtype(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def text_dtype(s: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


@dataclass
class ColumnFacts:
    dtype: str
    numeric: bool  # numeric and not bool
    text: bool  # neither numeric nor bool
    datetime: bool
    nulls: int = 0
    values: set = field(default_factory=set)
    unique: int = 0
    saturated: bool = False
    low: float = np.inf
    high: float = -np.inf
    any_finite: bool = False
    inf: int = 0
    present: int = 0  # text columns: non-null values, those that are not numbers, the first
    not_numbers: int = 0
    example: str | None = None
    longest: str = ""  # slice columns: the longest value as text ("<null>" for nulls)


class TableFacts:
    """Facts of a table accumulated over its batches (`add` each frame, then read them)."""

    def __init__(self, target: str, uncapped: set[str], slices: list[str]):
        self.target, self.uncapped, self.slices = target, uncapped, slices
        self.rows = 0
        self.columns: list[str] | None = None
        self.facts: dict[str, ColumnFacts] = {}
        self.target_nulls = 0
        self.target_not_numbers = 0  # regression: non-null values that are not numbers
        self.target_non_finite = 0  # numbers among the target's values that are ±inf
        self.target_float = False
        self.class_counts: Counter = Counter()
        self.row_hashes: list[np.ndarray] = []
        self.by_class: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.numeric_sums: np.ndarray | None = None  # regression: n, Sx, Sy, Sxx, Syy, Sxy
        self.sum_columns: list[str] = []

    def add(self, frame: pd.DataFrame) -> TableFacts:
        self.rows += len(frame)
        if self.columns is None:
            self.columns = [str(c) for c in frame.columns]
            if frame.columns.duplicated().any() or self.target not in self.columns:
                return self
            self.facts = {str(c): ColumnFacts(
                dtype=str(frame[c].dtype), numeric=numeric_dtype(frame[c]),
                text=text_dtype(frame[c]),
                datetime=pd.api.types.is_datetime64_any_dtype(frame[c])) for c in frame.columns}
            self.sum_columns = [c for c, f in self.facts.items() if f.numeric and c != self.target]
        if not self.facts:
            return self
        for name, facts in self.facts.items():
            self._column(name, frame[name], facts)
        self._target(frame[self.target])
        self._sums(frame)
        self.row_hashes.append(pd.util.hash_pandas_object(frame, index=False).to_numpy())
        return self

    def _column(self, name: str, s: pd.Series, facts: ColumnFacts) -> None:
        nulls = int(s.isna().sum())
        facts.nulls += nulls
        present = s.dropna()
        if not facts.saturated:
            distinct = present.unique()
            facts.unique = max(facts.unique, len(distinct))
            facts.values.update(distinct.tolist())
            facts.unique = max(facts.unique, len(facts.values))
            if name not in self.uncapped and len(facts.values) > UNIQUE_CAP:
                facts.saturated, facts.values = True, set()
        if facts.numeric and len(present):
            x = present.astype(float).to_numpy()
            finite = x[np.isfinite(x)]
            facts.inf += int(np.isinf(x).sum())
            if finite.size:
                facts.any_finite = True
                facts.low, facts.high = min(facts.low, finite.min()), max(facts.high, finite.max())
        if facts.text and len(present):
            bad = present[pd.to_numeric(present, errors="coerce").isna()]
            facts.present += len(present)
            facts.not_numbers += len(bad)
            if facts.example is None and len(bad):
                facts.example = str(bad.iloc[0])
        if name in self.slices:
            values = s.astype("string").fillna("<null>").unique()
            facts.longest = max([facts.longest, *(str(v) for v in values)], key=len)

    def _target(self, y: pd.Series) -> None:
        nulls = int(y.isna().sum())
        self.target_nulls += nulls
        present = y.dropna()
        numeric = pd.to_numeric(present, errors="coerce")
        self.target_not_numbers += int(numeric.isna().sum())
        values = numeric.dropna().to_numpy(dtype=float)
        self.target_non_finite += int((~np.isfinite(values)).sum())
        self.target_float = self.target_float or pd.api.types.is_float_dtype(y)
        self.class_counts.update(present.astype(str).value_counts().to_dict())

    def _sums(self, frame: pd.DataFrame) -> None:
        """Per target class (as text): rows, sum and sum of squares of every numeric column;
        for a numeric target also the joint sums (a regression's correlation)."""
        if not self.sum_columns:
            return
        X = frame[self.sum_columns].astype(float)
        y = frame[self.target]
        labels = y.astype(str).where(y.notna(), None)
        grouped = X.groupby(labels.to_numpy(), dropna=True)
        with np.errstate(invalid="ignore", over="ignore"):
            count, total, squares = grouped.count(), grouped.sum(), (X ** 2).groupby(
                labels.to_numpy(), dropna=True).sum()
        for cls in count.index:
            add = (count.loc[cls].to_numpy(float), total.loc[cls].to_numpy(float),
                   squares.loc[cls].to_numpy(float))
            old = self.by_class.get(str(cls))
            self.by_class[str(cls)] = add if old is None else tuple(
                a + b for a, b in zip(old, add, strict=True))
        yv = pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
        xv = X.to_numpy()
        mask = ~np.isnan(xv) & ~np.isnan(yv)[:, None]
        xz, yz = np.where(mask, xv, 0.0), np.where(mask, yv[:, None], 0.0)
        with np.errstate(invalid="ignore", over="ignore"):  # ±inf fails validation anyway
            sums = np.stack([mask.sum(0), xz.sum(0), yz.sum(0), (xz * xz).sum(0), (yz * yz).sum(0),
                             (xz * yz).sum(0)]).astype(float)
        self.numeric_sums = sums if self.numeric_sums is None else self.numeric_sums + sums

    def duplicate_rows(self) -> int:
        """Rows whose hash an earlier row has: the batches' hashes joined into one array (kept
        instead of them), sorted in place, equal neighbours counted. np.unique copied and
        indexed the array again: about 200 MB more and 4 s at 4 M rows."""
        if not self.row_hashes:
            return 0
        hashes = np.concatenate(self.row_hashes)
        self.row_hashes = [hashes]
        hashes.sort()
        return int(np.count_nonzero(hashes[1:] == hashes[:-1]))

    def correlations(self, codes: dict[str, float] | None) -> dict[str, float | None]:
        """|Pearson correlation| of every numeric column with the target: encoded by `codes`
        (class text → number), or the target's own numbers when codes is None. None where fewer
        than 3 rows pair up or either side is constant."""
        if not self.sum_columns:
            return {}
        if codes is None:
            if self.numeric_sums is None:
                return {}
            n, sx, sy, sxx, syy, sxy = self.numeric_sums
        else:
            k = len(self.sum_columns)
            n, sx, sy, sxx, syy, sxy = (np.zeros(k) for _ in range(6))
            for cls, (count, total, squares) in self.by_class.items():
                if cls not in codes:
                    continue
                c = codes[cls]
                n, sx, sxx = n + count, sx + total, sxx + squares
                sy, syy, sxy = sy + c * count, syy + c * c * count, sxy + c * total
        out: dict[str, float | None] = {}
        for i, col in enumerate(self.sum_columns):
            vx = n[i] * sxx[i] - sx[i] ** 2
            vy = n[i] * syy[i] - sy[i] ** 2
            if n[i] < 3 or vx <= 1e-12 * max(n[i] * sxx[i], 1e-300) or \
                    vy <= 1e-12 * max(n[i] * syy[i], 1e-300):
                out[col] = None
                continue
            out[col] = abs(float((n[i] * sxy[i] - sx[i] * sy[i]) / np.sqrt(vx * vy)))
        return out
