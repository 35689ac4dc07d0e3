"""Contracts: the types stages hand each other and the prediction table; no stage logic."""
