"""Where an operator command acts: an AWS account (region, secret prefix, stack) or `make serve`'s local stack.

AWS: the prefix is --prefix, else the stack's SecretPrefix (its output, else its parameter;
--stack, default sangoma-token-vending), else the function's default. Local (--local): the
running `make serve`, found through .local-stack.json. Every AWS failure becomes one
ToolError line naming the operation and AWS's error code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
from token_vending.settings import Settings

from devstack import local_aws, local_state

DEFAULT_STACK = "sangoma-token-vending"
DEFAULT_PREFIX = Settings(token_table_name="", token_kms_key_id="").secret_prefix
DEFAULT_SECRET_CACHE_SECONDS = Settings(token_table_name="", token_kms_key_id="").secret_cache_seconds
DEFAULT_TOKEN_URL = Settings(token_table_name="", token_kms_key_id="").token_url
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9/_+=.@-]+/")  # template.yaml's AllowedPattern for SecretPrefix
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto takes any


class ToolError(Exception):
    """A failure the operator can act on: printed as one line, exit status 1."""


@dataclass(frozen=True)
class Target:
    """An AWS account and region, or the local stack; `prefix` names the app secrets there."""

    session: boto3.session.Session
    endpoint_url: str | None
    prefix: str
    stack: str | None
    local: bool
    token_url: str | None = None  # the local stub's (make serve); a stack's comes from stack_token_url()
    vending_url: str | None = None  # the local gateway's (make serve); a stack's is its VendingUrl output

    def client(self, service: str) -> Any:
        with aws_errors("connect"):
            return self.session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    @property
    def where(self) -> str:
        return f"the local stack of make serve ({self.endpoint_url})" if self.local else f"AWS {self.region}"


def add_arguments(parser: argparse.ArgumentParser, *, help_suppressed: bool = False) -> None:
    """--local, --stack, --prefix, --region, --profile: where the command acts."""

    def text(value: str) -> str:
        return argparse.SUPPRESS if help_suppressed else value

    parser.add_argument("--local", action="store_true",
                        help=text("act on the local stack of a running `make serve` (make ... LOCAL=1)"))
    parser.add_argument("--stack", help=text(f"the deployed stack whose SecretPrefix to use (default: "
                                             f"{DEFAULT_STACK}, when it exists)"))
    parser.add_argument("--prefix", help=text(f"the secret name prefix (default: the stack's, else {DEFAULT_PREFIX})"))
    parser.add_argument("--region", help=text("AWS region (default: $AWS_REGION, else your configuration)"))
    parser.add_argument("--profile", help=text("AWS profile (default: botocore's credential chain)"))


def make_variables(args: argparse.Namespace, *, prefix: bool = True) -> str:
    """The make variables that chose where this command acted (` LOCAL=1`, or ` STACK=... SECRET_PREFIX=...
    REGION=... PROFILE=...`), for the commands a tool prints: pasted, they act on the same place. `prefix=False`
    for targets without SECRET_PREFIX (make tokens)."""
    if args.local:
        return " LOCAL=1"
    chosen = [("STACK", args.stack), ("SECRET_PREFIX", args.prefix if prefix else None), ("REGION", args.region),
              ("PROFILE", args.profile)]
    return "".join(f" {name}={shlex.quote(value)}" for name, value in chosen if value)


def resolve(args: argparse.Namespace, *, needs_prefix: bool = True) -> Target:
    if args.local:
        try:
            state = local_state.read_running()
        except local_state.NotRunning as error:
            raise ToolError(str(error)) from None
        session = boto3.session.Session(region_name=state.region, **LOCAL_CREDENTIALS)
        return Target(session, state.moto_url, local_aws.SECRET_PREFIX, None, local=True, token_url=state.token_url,
                      vending_url=state.gateway_url)
    session = aws_session(args.region, args.profile)
    target = Target(session, None, args.prefix or "", args.stack, local=False)
    if args.prefix:
        if not PREFIX_PATTERN.fullmatch(args.prefix):
            raise ToolError("--prefix must match ^[A-Za-z0-9/_+=.@-]+/$ (the template's SecretPrefix), e.g. "
                            f"{DEFAULT_PREFIX}")
        return target
    if not needs_prefix:
        return target
    return Target(session, None, stack_prefix(target, args.stack), args.stack or DEFAULT_STACK, local=False)


def aws_session(region: str | None, profile: str | None) -> boto3.session.Session:
    # botocore reads AWS_DEFAULT_REGION and the profile, not AWS_REGION (which Lambda and many shells set).
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region or os.environ.get("AWS_REGION"))
    except BotoCoreError as error:  # e.g. the profile does not exist
        raise ToolError(f"AWS configuration: {error}") from None
    if not session.region_name:
        raise ToolError("no AWS region: pass --region (REGION=... with make), or set AWS_REGION or AWS_DEFAULT_REGION")
    return session


def stack_prefix(target: Target, stack: str | None) -> str:
    """The deployed stack's SecretPrefix; the default prefix when the default stack is absent."""
    name = stack or DEFAULT_STACK
    cloudformation = target.client("cloudformation")
    try:
        described = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as error:
        if stack is None and code_of(error) in ("ValidationError", "AccessDenied", "AccessDeniedException"):
            print(f"note: stack {name} not readable in {target.region} ({code_of(error)}); using the default prefix "
                  f"{DEFAULT_PREFIX} (name yours with --stack or --prefix)", file=sys.stderr)
            return DEFAULT_PREFIX
        raise ToolError(_describe(error, "cloudformation DescribeStacks")) from None
    except BotoCoreError as error:
        raise ToolError(_describe(error, "cloudformation DescribeStacks")) from None
    for output in described.get("Outputs") or []:
        if output.get("OutputKey") == "SecretPrefix":
            return str(output["OutputValue"])
    for parameter in described.get("Parameters") or []:
        if parameter.get("ParameterKey") == "SecretPrefix":
            return str(parameter.get("ResolvedValue") or parameter["ParameterValue"])
    return DEFAULT_PREFIX


def stack_token_url(target: Target) -> str | None:
    """The token endpoint the function uses (it is part of every credential id): the local stub, or the stack's
    TokenUrl parameter. None when the stack cannot be read."""
    if target.local:
        return target.token_url
    try:
        described = target.client("cloudformation").describe_stacks(StackName=target.stack or DEFAULT_STACK)
    except (ClientError, BotoCoreError, ToolError):
        return None
    for parameter in described["Stacks"][0].get("Parameters") or []:
        if parameter.get("ParameterKey") == "TokenUrl":
            return str(parameter.get("ResolvedValue") or parameter["ParameterValue"])
    return DEFAULT_TOKEN_URL  # a stack without the parameter: the function's default


def stack_resource(target: Target, stack: str | None, logical_id: str) -> str:
    """The physical id (name) of one of the stack's resources, e.g. TokenVendingLogGroup."""
    with aws_errors("cloudformation DescribeStackResource"):
        answer = target.client("cloudformation").describe_stack_resource(StackName=stack or DEFAULT_STACK,
                                                                         LogicalResourceId=logical_id)
    return str(answer["StackResourceDetail"]["PhysicalResourceId"])


def stack_output(target: Target, stack: str | None, key: str) -> str:
    with aws_errors("cloudformation DescribeStacks"):
        described = target.client("cloudformation").describe_stacks(StackName=stack or DEFAULT_STACK)["Stacks"][0]
    for output in described.get("Outputs") or []:
        if output.get("OutputKey") == key:
            return str(output["OutputValue"])
    raise ToolError(f"stack {stack or DEFAULT_STACK} has no output {key}")


@contextmanager
def aws_errors(operation: str) -> Iterator[None]:
    """Any AWS failure inside becomes a one-line ToolError."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise ToolError(_describe(error, operation)) from None


def _describe(error: Exception, operation: str) -> str:
    if isinstance(error, NoCredentialsError):
        return ("no AWS credentials found (botocore's chain: environment, --profile/AWS_PROFILE, SSO, "
                "instance or task role)")
    if isinstance(error, NoRegionError):
        return "no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION"
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message", "")
        return f"{operation}: {code_of(error)}: {message}".rstrip(": ")
    return f"{operation}: {error}"


def code_of(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
