"""`mlops`: the command line. Commands load config and call flows; errors are one line."""

from __future__ import annotations

import gc

from mlops.environment import apply_defaults

apply_defaults()  # before Prefect or MLflow are imported: the one place the environment changes

from mlops import audit, batch, compliance, configs, platform, release, reproduce, server, status, training  # noqa: E402,F401 (each module adds its commands)
from mlops.app import app  # noqa: E402


def main() -> None:
    """The `mlops` process, its cyclic garbage collector tuned for a short command: collections
    less often while Prefect, MLflow and pandas are imported (each full collection walks every
    object imported so far), and none over the whole heap on the way out (the interpreter's
    final collections walked it again and again: about a second of CPU on a `--force` re-run)."""
    gc.set_threshold(10_000, 10, 10)  # Python's default is 700, 10, 10
    try:
        app()
    finally:
        gc.freeze()  # what exists now is never collected again: the process is ending


if __name__ == "__main__":
    main()
