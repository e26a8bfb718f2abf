"""`.local-stack.json`: where a running `make serve` listens, for the commands that talk to it.

`make serve` writes it once everything listens and removes it when it stops (Ctrl-C,
SIGTERM); `make tokens LOCAL=1`, `make apps LOCAL=1` (and anything else pointed at the
local stack) read it instead of assuming the default ports:

    {"moto_port": 8711, "token_port": 8712, "gateway_port": 8710, "region": "us-east-1", "pid": 4242}

$SANGOMA_LOCAL_STACK_FILE names another file (the tests use it, so a running
`make serve` is left alone). Imports nothing heavy: `make serve` reads it before
starting anything.

One `make serve` per file: while one runs it holds a lock on `.local-stack.json.lock`
(the kernel releases it when the process ends, however it ends), and a second one
refuses to start, naming the first, rather than overwrite its state.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

FILE_VARIABLE = "SANGOMA_LOCAL_STACK_FILE"
DEFAULT_FILE = Path(__file__).resolve().parent.parent / ".local-stack.json"


class NotRunning(Exception):
    """`make serve` is not running; the message says so in one line."""


class AlreadyRunning(Exception):
    """Another `make serve` runs with this state file; the message names it in one line."""


@dataclass(frozen=True)
class LocalState:
    moto_port: int
    token_port: int
    gateway_port: int
    region: str
    pid: int

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def token_url(self) -> str:
        """The stub token endpoint's URL: the function's TOKEN_URL against this stack."""
        return f"http://127.0.0.1:{self.token_port}/oauth/token"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"


def state_file() -> Path:
    return Path(os.environ.get(FILE_VARIABLE) or DEFAULT_FILE)


def claim(path: Path | None = None) -> TextIO:
    """Become the one `make serve` of this state file, for as long as the returned file stays open (keep it for
    the life of the process). AlreadyRunning when another one holds it."""
    target = path or state_file()
    lock = open(target.with_name(target.name + ".lock"), "a+")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip()
        lock.close()
        raise AlreadyRunning(_running_one(target, holder)) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _running_one(target: Path, holder: str) -> str:
    try:
        state = _load(target)
    except NotRunning:  # it has not written its state yet
        return f"make serve: another one is starting in this checkout (pid {holder or '?'}): wait for it, or stop it"
    return (f"make serve: already running in this checkout (pid {state.pid}; gateway {state.gateway_port}, moto "
            f"{state.moto_port}, token stub {state.token_port}): use it, or stop it first (Ctrl-C in its terminal)")


def write(state: LocalState, path: Path | None = None) -> Path:
    target = path or state_file()
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(asdict(state)) + "\n")
    partial.replace(target)  # readers never see half a file
    return target


def remove(pid: int, path: Path | None = None) -> None:
    """Remove the file if it is still ours (a second `make serve` on other ports may have replaced it)."""
    target = path or state_file()
    with contextlib.suppress(FileNotFoundError, NotRunning):
        if _load(target).pid == pid:
            target.unlink()


def read_running(path: Path | None = None) -> LocalState:
    """The running `make serve`'s ports; NotRunning when there is none."""
    target = path or state_file()
    if not target.exists():
        raise NotRunning(f"make serve is not running (no {target.name}): start it in another terminal")
    state = _load(target)
    if not _alive(state.pid):
        raise NotRunning(f"make serve is not running ({target.name} is left from process {state.pid}, "
                         "which has exited): start it in another terminal")
    return state


def _load(path: Path) -> LocalState:
    try:
        raw = json.loads(path.read_text())
        return LocalState(moto_port=int(raw["moto_port"]), token_port=int(raw["token_port"]),
                          gateway_port=int(raw["gateway_port"]), region=str(raw["region"]), pid=int(raw["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise NotRunning(f"{path} is not what make serve writes: remove it and start make serve again") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
