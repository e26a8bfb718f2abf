"""Benchmarks for the token vending function: `make bench` (python -m bench) prints one table.

Kept free of imports: cold-start children import this package before their clock starts.
"""
