"""dnsfilter scraped by a real Prometheus, and deploy/'s PromQL checked against what it exports.

One module-scoped stack: a ScriptedUpstream, `dnsfilter serve` with two networks (ministry is
127.0.0.2/32, agency is 127.0.0.3/32) and Debian's /usr/bin/prometheus started on a free port on
127.0.0.1. Prometheus scrapes dnsfilter every second with deploy/prometheus/prometheus.yml's
relabeling, and evaluates deploy/'s alert and recording rules every second. Its only target is
the dnsfilter on loopback, with no alertmanager or remote write, so it sends nothing elsewhere.
A missing prometheus or promtool fails these tests: scripts/test.sh installs them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import promql
from tests.fakes import ScriptedUpstream
from tests.integration.conftest import APPS_LIST, OTHER_LIST, base_config
from tests.integration.harness import DnsFilter

pytestmark = pytest.mark.integration

_START_TIMEOUT = 30.0
_DATA_TIMEOUT = 30.0
_HTTP_TIMEOUT = 5.0
MINISTRY, AGENCY = "127.0.0.2", "127.0.0.3"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install prometheus (scripts/test.sh installs it)")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(what: str, check: Callable[[], bool], timeout: float = _DATA_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


class Prometheus:
    """/usr/bin/prometheus on 127.0.0.1 with a config and a data directory under workdir."""

    def __init__(self, binary: str, workdir: Path, config: dict[str, Any]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        for _ in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={self.config_path}",
                        f"--storage.tsdb.path={self.workdir / 'data'}",
                        "--storage.tsdb.retention.time=1h",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline and self.process.poll() is None:
                if self._ready():
                    return
                time.sleep(0.2)
            self.stop()
            if "address already in use" not in self.log:
                break
        raise RuntimeError(f"prometheus did not become ready:\n{self.log[-4000:]}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=_HTTP_TIMEOUT) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as exc:  # 400/422 carry the error in the JSON body
            with exc:
                body = json.load(exc)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's vector (a scalar comes back as one sample without labels)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The value of a query that selects one series, or None when it selects none."""
        result = self.query(expr, at)
        assert len(result) <= 1, f"{expr} selects {len(result)} series"
        return float(result[0]["value"][1]) if result else None


@dataclass
class Stack:
    upstream: ScriptedUpstream
    dnsfilter: DnsFilter
    prometheus: Prometheus
    exposition: str  #: dnsfilter's /metrics after the traffic


def _blocked(network: str, list_name: str) -> str:
    return f'dnsfilter_blocked_queries_total{{network="{network}", list="{list_name}"}}'


def _prometheus_config(workdir: Path, target: str) -> dict[str, Any]:
    """The deploy/ job "dnsfilter" (its relabeling included), aimed at the test's dnsfilter."""
    deploy = yaml.safe_load((promql.PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = (job for job in deploy["scrape_configs"] if job["job_name"] == "dnsfilter")
    rule_files = []
    for path in promql.RULE_FILES:
        shutil.copy(path, workdir / path.name)
        rule_files.append(path.name)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": job["job_name"],
                "metrics_path": job["metrics_path"],
                "static_configs": [{"targets": [target], "labels": {"site": "test-site"}}],
                "relabel_configs": job["relabel_configs"],
                "metric_relabel_configs": job["metric_relabel_configs"],
            }
        ],
    }
    # Loopback only: one static target on 127.0.0.1, no alerting, no remote write.
    assert set(config) == {"global", "rule_files", "scrape_configs"}
    assert target.startswith("127.0.0.1:")
    return config


def _send_traffic(server: DnsFilter) -> None:
    # First the SERVFAIL, so the upstream's last try (its dnsfilter_upstream_up) is a good one.
    assert server.udp("broken.example.test", source=AGENCY).rcode() == 2
    for _ in range(3):
        server.udp("banned.example.test", source=MINISTRY)  # apps: blocked for ministry
    server.udp("banned.example.test", source=AGENCY)  # agency has no apps list: forwarded
    for _ in range(2):
        server.udp("other.example.test", source=AGENCY)  # other: blocked for agency
    server.udp("www.example.test", source=MINISTRY)  # forwarded
    server.udp("www.example.test", source=MINISTRY)  # cached
    server.tcp("www.example.test")  # 127.0.0.1 is in no network: refused


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = _tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    upstream = ScriptedUpstream(host="127.0.0.1")
    upstream.add("banned.example.test", "A", "192.0.2.80")
    upstream.add("www.example.test", "A", "192.0.2.10")
    upstream.servfail(name="broken.example.test")
    dnsfilter: DnsFilter | None = None
    prometheus: Prometheus | None = None
    try:
        upstream.start()
        config = base_config(
            [upstream.address],
            networks={"ministry": [f"{MINISTRY}/32"], "agency": [f"{AGENCY}/32"]},
            policies={
                "strict": {"networks": ["ministry"], "lists": ["apps", "other"]},
                "light": {"networks": ["agency"], "lists": ["other"]},
            },
        )
        dnsfilter = DnsFilter(workdir, config, {"apps": APPS_LIST, "other": OTHER_LIST})
        dnsfilter.start()
        assert dnsfilter.metrics_address is not None
        host, port = dnsfilter.metrics_address
        prometheus = Prometheus(binary, workdir, _prometheus_config(workdir, f"{host}:{port}"))
        prometheus.start()
        _wait_for("the first scrape", lambda: prometheus.value('up{job="dnsfilter"}') == 1)
        _send_traffic(dnsfilter)
        _wait_for(
            "the traffic in Prometheus",
            lambda: (
                prometheus.value(_blocked("ministry", "apps")) == 3
                and prometheus.value(_blocked("agency", "other")) == 2
                and prometheus.value('sum(dnsfilter_queries_total{result="cached"})') == 1
            ),
        )
        _, exposition = dnsfilter.http_get("/metrics")
        yield Stack(upstream, dnsfilter, prometheus, exposition)
    finally:
        if prometheus is not None:
            prometheus.stop()
        if dnsfilter is not None:
            code = dnsfilter.stop()
            assert code == 0, f"dnsfilter exited with {code}:\n{dnsfilter.log}"
        upstream.stop()


def test_blocked_counter_moves_for_the_right_network_and_list(stack: Stack) -> None:
    prometheus = stack.prometheus
    before = time.time()
    assert prometheus.value(_blocked("ministry", "apps")) == 3
    assert prometheus.value(_blocked("agency", "other")) == 2
    # Not for the other network: agency has no apps list, ministry sent nothing on other's list.
    assert prometheus.value(_blocked("agency", "apps")) is None
    assert prometheus.value(_blocked("ministry", "other")) is None
    forwarded = 'sum(dnsfilter_queries_total{network="agency", result="forwarded"})'
    assert prometheus.value(forwarded) == 1

    for _ in range(2):
        stack.dnsfilter.udp("a.banned.example.test", "AAAA", source=MINISTRY)
    _wait_for("the second batch", lambda: prometheus.value(_blocked("ministry", "apps")) == 5)
    assert prometheus.value(_blocked("ministry", "apps"), at=before) == 3
    assert prometheus.value(_blocked("agency", "other")) == 2
    assert prometheus.value(_blocked("agency", "apps")) is None
    moved = f"increase({_blocked('ministry', 'apps')}[1m]) > 0"
    assert prometheus.query(moved), moved
    still = f"changes({_blocked('agency', 'other')}[1m])"
    assert prometheus.value(still) == 0


def test_series_carry_the_fleet_relabeling(stack: Stack) -> None:
    (series,) = stack.prometheus.query(_blocked("ministry", "apps"))
    labels = series["metric"]
    assert labels["job"] == "dnsfilter"
    assert labels["instance"] == "127.0.0.1"  # the port stripped
    assert labels["site"] == "test-site"  # a given site kept
    assert labels["category"] == "other"
    assert stack.prometheus.query('count({__name__=~"python_gc_.+"})') == []  # dropped
    assert stack.prometheus.query("python_info")  # the rest kept


def test_rules_evaluate_without_errors_and_nothing_alerts_when_healthy(stack: Stack) -> None:
    prometheus = stack.prometheus
    recorded = 'network_list:dnsfilter_blocked_queries:rate5m{network="ministry", list="apps"}'
    _wait_for("a recording rule's first sample", lambda: bool(prometheus.query(recorded)))
    assert (prometheus.value(recorded) or 0) > 0
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = {rule["name"] for rule in rules}
    assert names == {str(r.get("alert") or r.get("record")) for r in promql.load_rules()}
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        assert not rule["lastEvaluation"].startswith("0001"), f"{rule['name']} never evaluated"
    alerts = prometheus.api("alerts")["alerts"]
    assert alerts == [], "alerts on a healthy resolver:\n" + json.dumps(alerts, indent=1)


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    prometheus = stack.prometheus
    expressions = [e for e in promql.expressions() if e.kind != "rule"]
    assert len(expressions) > 25

    def empty() -> list[str]:
        missing = []
        for expression in expressions:
            expr = promql.substitute_grafana(expression.expr)
            if expression.kind == "variable":
                found = prometheus.api("series", **{"match[]": expr})
            else:
                found = prometheus.query(expr)
            if not found:
                missing.append(f"{expression.source}: {expr}")
        return missing

    # Rates need two samples inside their window: allow a few scrapes.
    deadline = time.monotonic() + _DATA_TIMEOUT
    missing = empty()
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        missing = empty()
    assert missing == [], "panels or variables with no data:\n" + "\n".join(missing)


def test_every_metric_deploy_names_is_exported(stack: Stack) -> None:
    """Dashboard panels and variables and both rule files read only series that exist."""
    exported = promql.exported_names(stack.exposition)
    known = exported | promql.recorded_names() | promql.SYNTHETIC
    unknown = {}
    for expression in promql.expressions():
        names = promql.metric_names(expression.expr)
        assert names, f"{expression.source}: no metric name found in {expression.expr!r}"
        if names - known:
            unknown[expression.source] = sorted(names - known)
    assert unknown == {}, f"not exported by dnsfilter: {unknown}"


def test_exported_metrics_pass_promtool_lint(stack: Stack) -> None:
    result = subprocess.run(
        [_tool("promtool"), "check", "metrics"],
        input=stack.exposition,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_docs_document_every_dnsfilter_metric(stack: Stack) -> None:
    # The metric tables of docs/operators/metrics-and-alerts.md: serve's and the monitor's,
    # before the page turns to Prometheus and the alerts.
    page = (promql.ROOT / "docs" / "operators" / "metrics-and-alerts.md").read_text()
    section = page[: page.index("\n## How Prometheus sees the fleet")]
    families = promql.exported_families(stack.exposition)
    missing = sorted(
        name for name in families if name.startswith("dnsfilter_") and f"`{name}" not in section
    )
    assert missing == [], f"docs/operators/metrics-and-alerts.md does not list: {missing}"
