"""The invocation's EMF line: what CloudWatch needs to read it as metrics, whatever a run adds."""

from __future__ import annotations

import json

import pytest
from token_vending import observability

NAMESPACE = "SangomaTokenVending"


def test_a_metric_never_carries_more_values_in_one_line_than_emf_takes(capsys: pytest.CaptureFixture[str]) -> None:
    observability.take_metrics()
    for latency in range(250):  # a scheduled run that asked the endpoint 250 times
        observability.record_upstream("ok", float(latency))
    observability.write_invocation_line()

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(line["UpstreamLatency"]) if isinstance(line["UpstreamLatency"], list) else 1 for line in lines] == \
        [100, 100, 50]
    assert sum(line["UpstreamRequests"] for line in lines) == 250
    assert all(line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE for line in lines)


def test_counts_are_summed_and_the_line_is_emf(capsys: pytest.CaptureFixture[str]) -> None:
    observability.take_metrics()
    observability.record_vend("ok", "memory")
    observability.record_vend("ok", "memory")
    observability.write_invocation_line({"audit": "vend", "outcome": "ok"})

    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE and directive["Dimensions"] == [["service"]]
    assert {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]} == {
        "Vend_ok": "Count", "CacheTier_memory": "Count"}
    assert (line["service"], line["Vend_ok"], line["CacheTier_memory"]) == ("token-vending", 2, 2)
    assert (line["audit"], line["outcome"]) == ("vend", "ok")
    assert isinstance(line["_aws"]["Timestamp"], int)


def test_nothing_is_written_when_nothing_was_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    observability.take_metrics()
    observability.write_invocation_line()
    assert capsys.readouterr().out == ""
