"""Fingerprints of training data taken without loading it (the generator's spec, a file's
bytes), the run key they go into, and the up-to-date check built on both. (A query's result is
fingerprinted as it is read: see tasks.adapters.snowflake.read_query.)

A file is hashed once per process: the CLI's up-to-date check and the flow's data loading ask
for the same fingerprint, and the second gets the first's while the file's size and
modification time (or its ETag, remotely) are unchanged."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from tasks.core.config import DataSpec
from tasks.core.credentials import revealed
from tasks.core.errors import DataError
from tasks.core.lineage import code_hash, run_key
from tasks.core.redact import redact
from tasks.core.settings import data_urls
from tasks.training.synthetic import GENERATOR_VERSION

if TYPE_CHECKING:
    from tasks.adapters.mlflow_registry import ModelVersionRef, Registry
    from tasks.adapters.mlflow_rest import RestRegistry
    from tasks.core.config import ModelConfig
    from tasks.core.settings import Settings

_hashed: dict[tuple, str] = {}  # (location, size, mtime or etag) -> sha256 of the bytes


def file_path(spec: DataSpec) -> str:
    """data.path of a file source (DataSpec's validator requires it there)."""
    if spec.path is None:
        raise ValueError(f"data.path is not set (data.source is {spec.source})")
    return spec.path


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

        try:
            with revealed(file_path(spec), data_urls) as real:
                fs, path = fsspec.core.url_to_fs(real)
                identity = _identity(fs, path)
                if identity is not None and identity in _hashed:
                    return _hashed[identity]
                digest = _digest_file(fs, path)
        except FileNotFoundError:
            raise DataError(f"data file {redact(file_path(spec))} does not exist") from None
        if identity is not None:
            _hashed[identity] = digest
        return digest
    return None


def _identity(fs, path: str) -> tuple | None:
    """What says a file is unchanged without reading it; None when the store says too little."""
    info = fs.info(path)
    changed = next((info[k] for k in ("mtime", "ETag", "etag", "LastModified", "last_modified",
                                      "created") if info.get(k) is not None), None)
    if changed is None or info.get("size") is None:
        return None
    return (fs.unstrip_protocol(path), info["size"], str(changed))


def _digest_file(fs, path: str) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def as_of_fingerprint(fingerprint: str, as_of: str) -> str:
    """The fingerprint of a source's rows up to an as-of date (ISO day)."""
    return hashlib.sha256(f"{fingerprint}|as_of={as_of}".encode()).hexdigest()


def run_key_for(cfg: ModelConfig, fingerprint: str, device: str, code: str | None = None) -> str:
    return run_key(fingerprint, cfg.config_hash(), code or code_hash(), device)


def up_to_date(cfg: ModelConfig, settings: Settings, registry: Registry | RestRegistry
               ) -> ModelVersionRef | None:
    """The registered version this run would reproduce, found without loading data or Prefect.

    None when the data cannot be fingerprinted up front (a query) or nothing matches.
    """
    from tasks.core.device import select_device

    if cfg.data.source == "file" and file_path(cfg.data).endswith("/"):
        from tasks.training.batches import files_fingerprint, parquet_files

        with revealed(file_path(cfg.data), data_urls) as real:  # a folder of Parquet files
            fingerprint: str | None = files_fingerprint(parquet_files(real))
    else:
        fingerprint = source_fingerprint(cfg.data)
    if fingerprint is None:
        return None
    device = select_device(settings.device, settings.cuda_visible_devices)
    return registry.find_version(cfg.name, run_key_for(cfg, fingerprint, device))
