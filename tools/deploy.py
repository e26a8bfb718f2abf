"""`make deploy ENV=<env> [PARAMS="Key=Value ..."]`: deploy the build with a Revision that names it.

    python -m tools.deploy check ENV                       stops (status 2) unless samconfig.toml defines ENV
    python -m tools.deploy run ENV [--params "K=V ..."] [--dry-run] [--sam PATH] [--build-dir DIR]

`run` computes the Revision (tools/revision.py) from the build and the parameter values this deploy passes
(samconfig.toml's parameter_overrides for ENV, then --params over them), prints it, and runs
`sam deploy --config-env ENV --template-file <build>/template.yaml --parameter-overrides ... Revision=<hash>`.
samconfig.toml's own overrides are passed again because --parameter-overrides replaces them. Parameters
neither names keep their values from the previous deploy (as with any `sam deploy`). --dry-run prints the
command instead of running it. Runs on the SAM CLI's Python (.venv-sam): it reads samconfig.toml and the
overrides with SAM's own code, so they mean here what they mean to `sam deploy`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devstack.template import load_template

from .revision import BuildMissing, revision

ROOT = Path(__file__).resolve().parent.parent
SAMCONFIG = ROOT / "samconfig.toml"
BUILD_DIR = Path(".aws-sam") / "build"
REVISION = "Revision"
PLAIN_VALUE = re.compile(r"[^\s\"'\\]+")  # a value SAM's override parser takes unquoted


class DeployError(Exception):
    """Stops the deploy with one line of explanation."""


def deploy_envs(config: Path = SAMCONFIG) -> list[str]:
    """The config envs samconfig.toml gives deploy settings (`sam deploy --config-env NAME`)."""
    document = tomllib.loads(config.read_text())
    return [name for name, table in document.items() if isinstance(table, dict) and "deploy" in table]


def check_env(env: str, config: Path = SAMCONFIG) -> None:
    envs = deploy_envs(config)
    listed = ", ".join(envs)
    if not env:
        raise DeployError(f"no ENV given: make deploy ENV=<config env>, one of {listed} ({config.name}'s)")
    if env not in envs:
        raise DeployError(f"{config.name} defines no config env {env!r} to deploy: one of {listed}")


def check_names(parameters: Mapping[str, str], template: Path) -> None:
    """Every name given is a parameter of the template (sam deploy would drop any other without a word)."""
    known = load_template(template).get("Parameters", {})
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise DeployError(f"{template.name} has no parameter {', '.join(unknown)}; its parameters: {', '.join(known)}")


def given_overrides(params: str) -> dict[str, str]:
    """PARAMS, which may name any parameter but the one make deploy computes."""
    given = parse_overrides(params)
    if REVISION in given:
        raise DeployError(f"{REVISION} is the hash make deploy computes: leave it out of PARAMS")
    return given


def parse_overrides(text: str | list[Any] | None) -> dict[str, str]:
    """Parameter overrides as `sam deploy` reads them ("K=V K2='a b'", or ParameterKey=...,ParameterValue=...)."""
    import click
    from samcli.cli.types import CfnParameterOverridesType

    try:
        return dict(CfnParameterOverridesType().convert(text, None, None))
    except click.exceptions.BadParameter as error:
        raise DeployError(f"parameter overrides: {error.message}") from error


def samconfig_overrides(env: str, config: Path = SAMCONFIG) -> dict[str, str]:
    """ENV's parameter_overrides for `sam deploy` (its global ones under its deploy ones, as SAM merges them)."""
    from samcli.lib.config.samconfig import SamConfig

    settings = SamConfig(str(config.parent), config.name).get_all(["deploy"], "parameters", env=env)
    return parse_overrides(settings.get("parameter_overrides"))


def override_token(key: str, value: str) -> str:
    """One Key=Value argument for `sam deploy --parameter-overrides` (quoted when the value needs it)."""
    if PLAIN_VALUE.fullmatch(value):
        return f"{key}={value}"
    return '{}="{}"'.format(key, value.replace('"', '\\"'))


def override_tokens(parameters: Mapping[str, str]) -> list[str]:
    """The Key=Value arguments, checked to read back through SAM's parser as exactly these values."""
    tokens = [override_token(key, value) for key, value in parameters.items()]
    read_back = parse_overrides(tokens)
    garbled = sorted(key for key, value in parameters.items() if read_back.get(key) != value)
    if garbled:  # SAM's override syntax cannot carry every string (a backslash before a quote, say)
        raise DeployError(f"sam deploy would not receive these values as given: {', '.join(garbled)}")
    return tokens


def deploy_command(sam: str, env: str, parameters: Mapping[str, str]) -> list[str]:
    """No --template-file: sam deploy then takes .aws-sam/build/template.yaml, and samconfig.toml from the
    current directory (with --template-file it would look for samconfig.toml beside that template)."""
    return [sam, "deploy", "--config-env", env, "--parameter-overrides", *override_tokens(parameters)]


def plan(env: str, params: str, build_dir: Path, config: Path = SAMCONFIG) -> tuple[str, dict[str, str]]:
    """(the Revision, every parameter value to pass, Revision last) for deploying ENV's stack from build_dir."""
    check_env(env, config)
    given = {**samconfig_overrides(env, config), **given_overrides(params)}
    given.pop(REVISION, None)  # a first `sam deploy --guided` may have saved Revision="": computed here instead
    try:
        named = revision(build_dir, given)
    except BuildMissing as error:
        raise DeployError(str(error)) from error
    check_names(given, build_dir / "template.yaml")
    return named, {**given, REVISION: named}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["check", "run"])
    parser.add_argument("env", help="the samconfig.toml config env (default, dev, prod, ...)")
    parser.add_argument("--params", default="", help='parameter overrides over samconfig\'s: "Key=Value ..."')
    parser.add_argument("--sam", default="sam", help="the SAM CLI to run")
    parser.add_argument("--dry-run", action="store_true", help="print the sam deploy command, do not run it")
    # Another build or samconfig.toml than the checkout's: for --dry-run only (sam deploy reads the checkout's).
    parser.add_argument("--build-dir", type=Path, default=ROOT / BUILD_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=SAMCONFIG, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.action == "check":  # before building: the env, and the names of the parameters given
            check_env(args.env, args.config)
            check_names(given_overrides(args.params), ROOT / "template.yaml")
            return 0
        elsewhere = args.build_dir.resolve() != (ROOT / BUILD_DIR).resolve() or args.config != SAMCONFIG
        if elsewhere and not args.dry_run:
            raise DeployError("--build-dir and --config go with --dry-run only: sam deploy reads the checkout's")
        named, parameters = plan(args.env, args.params, args.build_dir, args.config)
        command = deploy_command(args.sam, args.env, parameters)
    except DeployError as error:
        print(f"make deploy: {error}", file=sys.stderr)
        return 2
    where = args.build_dir.relative_to(ROOT) if args.build_dir.is_relative_to(ROOT) else args.build_dir
    print(f"Revision {named}: the build in {where} and the parameter values below")
    print(shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    return subprocess.run(command, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
