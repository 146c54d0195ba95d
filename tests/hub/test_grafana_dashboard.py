"""The shipped Grafana dashboard asks only for what the InfluxDB sink writes."""

import json
import re
from pathlib import Path

import pytest

from contract.classes import CATALOG
from hub.influx import TAGS

pytestmark = pytest.mark.unit
DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "midbrain-telemetry.json"


def _queries(doc: dict) -> list[str]:
    panels = [t["query"] for p in doc["panels"] for t in p.get("targets", [])]
    variables = [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    return panels + variables


def test_every_query_names_a_measurement_field_and_tag_the_sink_writes() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["panels"]
    for query in _queries(doc):
        for measurement, field in re.findall(r'r\._measurement == "(\w+)" and r\._field == "(\w+)"', query):
            assert measurement in CATALOG, query
            assert CATALOG[measurement].metric(field) is not None, query  # type: ignore[index]
        used = set(re.findall(r"\br\.(\w+)", query)) | set(re.findall(r'tag: "(\w+)"', query))
        used |= {c for cols in re.findall(r"columns: \[([^\]]*)\]", query) for c in re.findall(r'"(\w+)"', cols)}
        assert used - {"_measurement", "_field"} <= set(TAGS), query
    fields = re.findall(r'r\._field == "(\w+)"', "\n".join(_queries(doc)))
    assert len(fields) >= 5  # the environment and utilities a property manager watches


def test_panel_titles_are_chinese_first() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert all(re.match(r"[\u4e00-\u9fff]", p["title"]) or p["title"].startswith("PM") for p in doc["panels"])
