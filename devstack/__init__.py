"""The embedded local stack: a moto server and a stub of Sangoma's token endpoint on 127.0.0.1.

Shared by the tests, `make demo`, `make serve` and `make bench`; never deployed.
"""
