"""Fingerprints of training data taken without loading it: the generator's spec, a file's bytes.
(A query's result is fingerprinted as it is read: see tasks.adapters.snowflake.read_query.)"""

from __future__ import annotations

import hashlib
import json

from tasks.core.config import DataSpec
from tasks.core.credentials import revealed
from tasks.core.errors import DataError
from tasks.core.redact import redact
from tasks.core.settings import data_urls
from tasks.training.synthetic import GENERATOR_VERSION


def source_fingerprint(spec: DataSpec) -> str | None:
    """Fingerprint a data source without loading it: the generator's spec, or a file's bytes.

    A query result cannot be known without running the query: None for Snowflake.
    """
    if spec.source == "synthetic":
        payload = {"generator": GENERATOR_VERSION, "rows": spec.synthetic_rows,
                   "seed": spec.seed, "drift": spec.drift}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    if spec.source == "file" and spec.path:
        import fsspec

        digest = hashlib.sha256()
        try:
            with revealed(spec.path, data_urls) as real, fsspec.open(real, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            raise DataError(f"data file {redact(spec.path)} does not exist") from None
        return digest.hexdigest()
    return None


def as_of_fingerprint(fingerprint: str, as_of: str) -> str:
    """The fingerprint of a source's rows up to an as-of date (ISO day)."""
    return hashlib.sha256(f"{fingerprint}|as_of={as_of}".encode()).hexdigest()
