"""Start a module the way Lambda's Python runtime starts the function, from an unpacked artifact.

    python3.13 -I -B devstack/lambda_bootstrap.py --task-root DIR [--layer DIR]... [--path DIR]...
        [--report FILE] [--module awslambdaric] ARG...

sys.path is laid out as Lambda lays it out: the function folder (/var/task) first, then each
layer's python/ folder in template order, then the runtime's own packages (this interpreter's
site-packages). `--path` folders come after the layers (the benchmarks' own code). Then
`--module` runs as __main__ with ARG... (by default `python -m awslambdaric HANDLER`, what the
runtime runs). Run it with -I (nothing from the environment or the user's site reaches the path)
and -B (nothing written): Lambda's folders are read-only.

With `--report FILE`, every file the process compiles from source is recorded, and when the
process ends (SIGTERM, or exit) FILE gets JSON: those files, each loaded module's file, the
interpreter's version and prefixes, and botocore's version. A module that has valid bytecode is
never compiled, so an empty list under the artifact's folders proves its bytecode is used.

Standard library only: it runs before anything is on the path.
"""

from __future__ import annotations

import argparse
import atexit
import importlib._bootstrap_external as bootstrap_external
import json
import os
import runpy
import signal
import sys
import sysconfig
from typing import Any

compiled_from_source: list[str] = []


def record_compilation() -> None:
    # SourceLoader.source_to_code runs only when a module has no usable bytecode and is compiled from its source.
    original = bootstrap_external.SourceLoader.source_to_code

    def source_to_code(self: Any, data: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        compiled_from_source.append(os.fspath(path))
        return original(self, data, path, *args, **kwargs)

    bootstrap_external.SourceLoader.source_to_code = source_to_code  # type: ignore[method-assign]


def write_report(path: str) -> None:
    botocore = sys.modules.get("botocore")
    report = {
        "compiled_from_source": compiled_from_source,
        "module_files": {name: module.__file__ for name, module in list(sys.modules.items())
                         if isinstance(getattr(module, "__file__", None), str)},
        "python": list(sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "prefix": sys.prefix,
        "stdlib": sysconfig.get_paths()["stdlib"],
        "sys_path": sys.path,
        "dont_write_bytecode": sys.dont_write_bytecode,
        "botocore": getattr(botocore, "__version__", None),
    }
    with open(path, "w") as handle:
        json.dump(report, handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-root", required=True)
    parser.add_argument("--layer", action="append", default=[])
    parser.add_argument("--path", action="append", default=[])
    parser.add_argument("--report")
    parser.add_argument("--module", default="awslambdaric")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if entry and os.path.abspath(entry) != here]
    sys.path[0:0] = [options.task_root, *options.layer, *options.path]

    if options.report:
        report_file = options.report
        record_compilation()
        atexit.register(write_report, report_file)

        def on_sigterm(*_: Any) -> None:
            write_report(report_file)
            os._exit(0)  # the runtime client may be blocked in native code: leave at once

        signal.signal(signal.SIGTERM, on_sigterm)

    sys.argv = [options.module, *options.args]
    runpy.run_module(options.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
