"""Where data lives: a file by its name's ending (.parquet, .csv; local or an fsspec URL) or a
Snowflake query/table (`snowflake:…`); one rule for inputs and outputs."""

from __future__ import annotations

from tasks.core.errors import DataError

SNOWFLAKE = "snowflake:"
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv"}


def file_format(location: str, role: str = "input") -> str:
    """'parquet' or 'csv' by the name's ending; anything else is a one-line DataError."""
    lower = location.lower()
    for suffix, kind in FORMATS.items():
        if lower.endswith(suffix):
            return kind
    target = "snowflake:<query>" if role == "input" else "snowflake:<table>"
    raise DataError(f"{role} must be .parquet, .csv or {target}, got {location}")


def check_exists(location: str) -> None:
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(location)
    if not paths or not fs.exists(paths[0]) or fs.isdir(paths[0]):
        raise DataError(f"{location} does not exist")
