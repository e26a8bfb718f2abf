"""Imports one module and nothing else, for `-X importtime`: `python -X importtime -m bench.import_probe MODULE`.

The marker line on stderr separates the interpreter's own start-up imports from the module's.
"""

import importlib
import sys

MARKER = "bench.import_probe: importing"

if __name__ == "__main__":
    print(MARKER, file=sys.stderr, flush=True)
    importlib.import_module(sys.argv[1])
