"""Core: the typed model contract, environment settings, errors, task types, lineage."""
