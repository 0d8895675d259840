"""What the deploy/ files ask of Prometheus: their PromQL, the metric names in it, and the
names a /metrics page really exports.

No PromQL parser is at hand in Python, so `metric_names` removes what cannot be a metric name
(strings, label matchers, ranges, grouping clauses, numbers and durations, Grafana variables),
then keeps the identifiers that are not keywords and not followed by "(" (functions and
aggregations). The unit tests in test_deploy.py pin it down on the forms deploy/ uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = (PROMETHEUS_DIR / "alerts.yml", PROMETHEUS_DIR / "recording.yml")
DASHBOARD = DEPLOY / "grafana" / "dnsfilter.json"

#: Series Prometheus makes itself for every target: not on any /metrics page.
SYNTHETIC = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
)
#: The sample names each metric type exposes, as suffixes of the family name (the text
#: parser strips a counter's _total, so family "x" of type counter is the series x_total).
SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
#: Stand-ins for Grafana's variables when an expression is sent to a real Prometheus.
GRAFANA_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "job": "dnsfilter.*",
    "instance": ".*",
    "network": ".*",
    "list": ".*",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_DURATION_OR_NUMBER = re.compile(
    r"(?<![\w:.])(?:(?:\d+(?:ms|[smhdwy]))+|0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"(?![\w:])"
)
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2", "start", "end"}
)
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """Every metric name an expression reads (recording-rule names included)."""
    text = _STRING.sub(" ", expr)
    text = _VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _DURATION_OR_NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        following = text[match.end() :].lstrip()
        if match.group() in _KEYWORDS or following.startswith("("):
            continue
        names.add(match.group())
    return names


def exported_names(exposition: str) -> set[str]:
    """The series names a /metrics page exports, with or without a sample in each family."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def exported_families(exposition: str) -> dict[str, str]:
    """Family name (a counter's with _total, as PromQL sees it) -> metric type."""
    families = {}
    for family in text_string_to_metric_families(exposition):
        name = family.name + ("_total" if family.type == "counter" else "")
        families[name] = family.type
    return families


@dataclass(frozen=True)
class Expression:
    source: str  #: where it is, for messages: "alerts.yml: DnsfilterUpstreamDown"
    expr: str
    kind: str  #: "rule", "panel" or "variable"


def load_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def recorded_names() -> set[str]:
    return {str(rule["record"]) for rule in load_rules() if "record" in rule}


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variable_selector(query: str) -> str:
    """The series selector of a Grafana `label_values(SELECTOR, LABEL)` variable query."""
    match = _LABEL_VALUES.match(query)
    if not match:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return match.group(1)


def expressions() -> list[Expression]:
    """Every PromQL expression in the alert and recording rules and the dashboard."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                found.append(Expression(f"{path.name}: {name}", str(rule["expr"]), "rule"))
    dashboard = load_dashboard()
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            source = f"dnsfilter.json: panel {panel['title']!r} {target['refId']}"
            found.append(Expression(source, str(target["expr"]), "panel"))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
            source = f"dnsfilter.json: variable ${variable['name']}"
            found.append(Expression(source, variable_selector(query), "variable"))
    return found


def substitute_grafana(expr: str) -> str:
    """The expression as Grafana would send it, with test values for the variables."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VALUES:
            raise KeyError(f"no test value for Grafana variable ${name} in {expr!r}")
        return GRAFANA_VALUES[name]

    return _VARIABLE.sub(value, expr)
