"""Offline evaluation of the answering agent against a versioned golden set (see docs/evals.md)."""
