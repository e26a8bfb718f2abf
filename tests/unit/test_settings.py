"""The function's settings: one declaration gives each variable its name, type, default and meaning; the
template sets a variable only from a parameter or resource the declaration names, and the configuration
table in docs/operations.md says the same."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from pathlib import Path

import pytest
import yaml
from token_vending.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {declared.name.upper(): declared for declared in fields(Settings)}
NUMERIC = [name for name, declared in DECLARED.items() if declared.type in ("int", "float")]
# What the template's environment carries beside the settings: Powertools' own and botocore's.
NOT_SETTINGS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_TRACE_DISABLED", "AWS_ENDPOINT_URL"}


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain {tag: value} mappings."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: loader.construct_scalar(node)}
                              if isinstance(node, yaml.ScalarNode) else {suffix: loader.construct_sequence(node)})


def template_environment() -> dict[str, object]:
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    function = template["Resources"]["TokenVendingFunction"]["Properties"]
    return {**template["Globals"]["Function"]["Environment"]["Variables"], **function["Environment"]["Variables"]}


def test_every_setting_says_what_it_means() -> None:
    assert [name for name, declared in DECLARED.items() if len(declared.metadata.get("doc", "")) < 20] == []


def test_the_template_sets_exactly_the_settings_declared_as_set_by_it() -> None:
    environment = template_environment()
    set_by_template = {name: declared.metadata["template"] for name, declared in DECLARED.items()
                       if declared.metadata["template"]}

    assert set(environment) - NOT_SETTINGS == set(set_by_template)
    for name, source in set_by_template.items():
        assert environment[name] == {"Ref": source}, name


def test_the_configuration_table_lists_every_setting_with_its_default_and_source() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text[text.index("## Configuration"):]
    rows = {match["name"]: match for match in re.finditer(
        r"^\| `(?P<name>[A-Z_]+)` \| (?P<default>[^|]*) \| (?P<source>[^|]*) \|", table, re.M)}

    assert set(DECLARED) <= set(rows)
    for name, declared in DECLARED.items():
        source = declared.metadata["template"]
        assert rows[name]["source"].strip() == (f"`{source}`" if source else "(code default)"), name
        default = declared.default
        if default:
            assert re.match(rf"`?{re.escape(str(default))}`?( |$)", rows[name]["default"].strip()), name


def test_a_deployment_without_overrides_runs_the_code_defaults() -> None:
    """Each template parameter that sets a setting defaults to the code's default (the one the configuration
    table shows): a stack deployed with no parameters behaves as the code and the docs say."""
    parameters = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)["Parameters"]  # noqa: S506
    templated = {declared.name: declared.metadata["template"] for declared in DECLARED.values()
                 if declared.metadata["template"] in parameters}

    assert templated
    for name, parameter in templated.items():
        assert str(parameters[parameter]["Default"]) == str(getattr(Settings(), name)), name


def test_settings_defaults_keep_a_vend_within_api_gateway_limits() -> None:
    settings = Settings.from_env({})
    assert 0 < settings.token_connect_timeout_seconds < 29
    assert 0 < settings.token_read_timeout_seconds < 29
    assert 0 < settings.lease_wait_seconds < 29
    # A lease outlasts a whole fetch (so no second container fetches meanwhile), and a waiter outlasts a
    # lease (so a dead holder's is taken over); waiting and then fetching still ends before API Gateway's 29 s.
    assert settings.token_fetch_deadline_seconds < settings.lease_seconds < settings.lease_wait_seconds
    assert settings.lease_wait_seconds + settings.token_fetch_deadline_seconds < 29
    assert settings.max_token_lifetime_seconds == 2 * 365 * 86_400


@pytest.mark.parametrize("name", list(DECLARED))
def test_a_blank_value_means_the_default(name: str) -> None:
    assert Settings.from_env({name: "  "}) == Settings()


@pytest.mark.parametrize("name", list(DECLARED))
def test_each_variable_sets_its_own_setting_and_no_other(name: str) -> None:
    declared = DECLARED[name]
    raw, value = ("p/", "p/") if declared.type == "str" else ("7", 7.0 if declared.type == "float" else 7)
    assert value != declared.default

    settings = Settings.from_env({name: f" {raw} "})  # blanks around a value are ignored

    assert settings == replace(Settings(), **{declared.name: value})
    assert type(getattr(settings, declared.name)) is type(value)


def test_whole_seconds_settings_are_ints_and_fractional_ones_floats() -> None:
    settings = Settings.from_env({"MIN_TTL_SECONDS": "60.9", "LEASE_WAIT_SECONDS": "2"})
    assert settings.min_ttl_seconds == 60 and isinstance(settings.min_ttl_seconds, int)
    assert settings.lease_wait_seconds == 2.0 and isinstance(settings.lease_wait_seconds, float)


def test_settings_read_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DECLARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIN_TTL_SECONDS", "120")
    monkeypatch.setenv("TOKEN_TABLE_NAME", "from-env")
    settings = Settings.from_env()
    assert settings == replace(Settings(), min_ttl_seconds=120, token_table_name="from-env")


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("value", ["-1", "-0.5", "-300"])
def test_settings_reject_negative_numbers(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("name", ["MIN_TTL_SECONDS", "SECRET_CACHE_SECONDS", "LEASE_WAIT_SECONDS"])
@pytest.mark.parametrize("value", ["abc", "5s", "1,5"])
def test_settings_reject_non_numbers(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({name: value})


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("value", ["nan", "inf", "-nan"])
def test_settings_reject_non_finite_values(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})
