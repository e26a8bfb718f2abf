"""Operator commands, run from the repository root: `make apps`, `make smoke`, `make tokens`
(or `.venv/bin/python -m tools.apps ...`).

They reuse the function's own rules (functions/token_vending) and the client package
(layers/client/python) of this checkout, so both are put on the import path here.
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _path in (_ROOT / "functions", _ROOT / "layers" / "client" / "python"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
