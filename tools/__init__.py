"""Operator commands (run from the repository root, e.g. `make tokens`)."""
