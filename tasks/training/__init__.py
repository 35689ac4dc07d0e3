"""Training stages: data, validate, plan, train, evaluate, gate, register (and notebooks)."""
