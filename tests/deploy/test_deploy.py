"""The deploy/ files, checked by the tools that will read them and against each other.

Prometheus: promtool checks the config and rules and runs the rules' unit tests. systemd:
systemd-analyze verifies the units in a scratch root and scores their sandbox. Container: the
Containerfile is parsed for the essentials (no registry here to build it). Kubernetes: the
manifests are validated against a pinned Kubernetes version's schemas, and their names, labels
and ports checked against each other and against the config they mount. Grafana: the
dashboard's shape. What needs a live server is in tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import http.server
import ipaddress
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy import promql
from tests.deploy.promql import DEPLOY, PROMETHEUS_DIR, ROOT

SYSTEMD_DIR = DEPLOY / "systemd"
CONTAINER_DIR = DEPLOY / "container"
KUBERNETES_DIR = DEPLOY / "kubernetes"
#: The Kubernetes version the manifests are validated against: the oldest they claim to support.
KUBERNETES_VERSION = "1.30.0"
_TIMEOUT = 60


def tool(name: str, package: str) -> str:
    """The path of a tool the tests need; a missing one fails the test, never skips it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install {package} (scripts/test.sh installs it)")
    return path


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dnsfilter", "check-config", str(path)])


# --- Prometheus ------------------------------------------------------------------------------


def test_promtool_checks_the_config_and_its_rule_files() -> None:
    result = run(
        [tool("promtool", "prometheus"), "check", "config", "prometheus.yml"], PROMETHEUS_DIR
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert "SUCCESS: 2 rule files found" in output, output


def test_promtool_checks_the_rules() -> None:
    args = [tool("promtool", "prometheus"), "check", "rules", "alerts.yml", "recording.yml"]
    result = run(args, PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_runs_the_rules_unit_tests() -> None:
    args = [tool("promtool", "prometheus"), "test", "rules", "alerts_test.yml"]
    result = run(args, PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in promql.load_rules() if "alert" in rule]


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    read = {rule["alert"]: promql.metric_names(str(rule["expr"])) for rule in _alerts()}
    assert read == {
        "DnsfilterTargetDown": {"up"},
        "DnsfilterUpstreamDown": {"dnsfilter_upstream_up"},
        "DnsfilterAllUpstreamsDown": {"dnsfilter_upstream_up"},
        "DnsfilterListStale": {"dnsfilter_list_last_reload_timestamp_seconds"},
        "DnsfilterListReloadFailing": {"dnsfilter_list_reload_failures_total"},
        "DnsfilterBlockedSpike": {"dnsfilter_blocked_queries_total"},
        "DnsfilterHighServfailRatio": {"dnsfilter_queries_total"},
        "DnsfilterAuditStoreUnhealthy": {"dnsfilter_audit_store_healthy"},
    }


@pytest.mark.parametrize("rule", _alerts(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_is_annotated(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("warning", "critical")
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description"}
    assert "{{ $labels.instance }}" in annotations["summary"]
    assert len(annotations["description"]) > 80


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent() -> None:
    cases = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    fired: set[str] = set()
    silent: set[str] = set()
    for test in cases["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    alerts = {str(rule["alert"]) for rule in _alerts()}
    assert alerts - fired == set(), "alerts never shown to fire"
    assert alerts - silent == set(), "alerts never shown to stay silent"


def test_every_recording_rule_is_unit_tested() -> None:
    cases = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    tested = {case["expr"] for test in cases["tests"] for case in test.get("promql_expr_test", [])}
    assert promql.recorded_names() <= tested


def _relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus' `replace` relabeling (the only action the fleet job uses)."""
    out = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace"
        value = rule.get("separator", ";").join(out.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)  # RE2 anchors the regex too
        if match:
            out[rule["target_label"]] = match.expand(
                rule.get("replacement", "$1").replace("$", "\\")
            )
    return out


@pytest.mark.parametrize(
    ("target", "given", "expected"),
    [
        pytest.param(
            "dns1.hq.ministry.example:9153",
            {},
            {"site": "hq", "instance": "dns1.hq.ministry.example"},
            id="site-from-host-name",
        ),
        pytest.param(
            "10.20.0.53:9153",
            {"site": "branch-north"},
            {"site": "branch-north", "instance": "10.20.0.53"},
            id="address-keeps-given-site",
        ),
        pytest.param(
            "dns9.lab.example:9153",
            {"site": "east"},
            {"site": "east", "instance": "dns9.lab.example"},
            id="given-site-wins-over-host-name",
        ),
        pytest.param("[2001:db8::53]:9153", {}, {"instance": "[2001:db8::53]"}, id="ipv6"),
    ],
)
def test_fleet_relabeling(target: str, given: dict[str, str], expected: dict[str, str]) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = (job for job in config["scrape_configs"] if job["job_name"] == "dnsfilter")
    labels = _relabel({"__address__": target, **given}, job["relabel_configs"])
    assert {k: v for k, v in labels.items() if not k.startswith("__")} == expected


# --- PromQL name extraction (used against a live /metrics in the integration tests) ----------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        pytest.param("up == 0", {"up"}, id="comparison"),
        pytest.param(
            'sum by (network, list) (rate(dnsfilter_blocked_queries_total{list=~"$list"}[5m]))',
            {"dnsfilter_blocked_queries_total"},
            id="aggregation-grouping-matchers-range",
        ),
        pytest.param(
            "sum(rate(a_total[5m])) without (instance) / on (job) group_left (x) b",
            {"a_total", "b"},
            id="trailing-grouping-and-matching",
        ),
        pytest.param(
            "histogram_quantile(0.99, sum by (le) (rate(d_seconds_bucket[$__rate_interval])))",
            {"d_seconds_bucket"},
            id="histogram-quantile-and-grafana-variable",
        ),
        pytest.param(
            "time() - x_timestamp_seconds > 6 * 3600 and y offset 1h30m or vector(0)",
            {"x_timestamp_seconds", "y"},
            id="functions-numbers-keywords-offset",
        ),
        pytest.param(
            'count(x{__name__!="", le="0.5", job=~"a|b"}) > bool 1e3',
            {"x"},
            id="strings-with-identifiers-and-exponent",
        ),
        pytest.param(
            "histogram_quantile(0.99, le:d_seconds_bucket:rate5m)",
            {"le:d_seconds_bucket:rate5m"},
            id="recording-rule-name",
        ),
        pytest.param("rate(a_total[${__range}])", {"a_total"}, id="braced-variable"),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert promql.metric_names(expr) == names


def test_exported_names_follow_the_suffix_rules() -> None:
    exposition = (
        "# HELP q_total Queries.\n# TYPE q_total counter\n"
        "# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n"
        "# HELP g A gauge.\n# TYPE g gauge\ng 1.0\n"
        '# HELP b_info Build.\n# TYPE b_info gauge\nb_info{version="1"} 1.0\n'
    )
    names = promql.exported_names(exposition)
    assert {"q_total", "d_seconds_bucket", "d_seconds_count", "d_seconds_sum", "g"} <= names
    assert "b_info" in names
    assert "q" not in names  # the family name of a counter is not a series
    assert "d_seconds" not in names


# --- Grafana dashboard ---------------------------------------------------------------------


def _panels() -> list[dict[str, Any]]:
    return [p for p in promql.dashboard_panels(promql.load_dashboard()) if p["type"] != "row"]


def test_dashboard_shape() -> None:
    dashboard = promql.load_dashboard()
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] == "dnsfilter"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for name in ("network", "list", "instance", "job"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert variables[name]["allValue"] == ".*"  # "All" must work inside =~ matchers
    ids = [p["id"] for p in promql.dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_dashboard_panels_use_the_datasource_variable() -> None:
    wanted = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in _panels():
        assert panel["datasource"] == wanted, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == wanted, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in promql.dashboard_panels(promql.load_dashboard()):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_dashboard_covers_what_the_issue_asks_for() -> None:
    exprs = [t["expr"] for p in _panels() for t in p["targets"]]
    read = set().union(*(promql.metric_names(e) for e in exprs))
    assert {
        "dnsfilter_blocked_queries_total",  # blocked attempts by app and network
        "dnsfilter_queries_total",  # queries by result
        "dnsfilter_query_duration_seconds_bucket",  # latency quantiles
        "dnsfilter_cache_hits_total",  # cache hit ratio
        "dnsfilter_cache_misses_total",
        "dnsfilter_upstream_up",  # upstream health
        "dnsfilter_upstream_duration_seconds_bucket",  # upstream latency
        "dnsfilter_list_last_reload_timestamp_seconds",  # list freshness
        "dnsfilter_list_reload_failures_total",  # reload failures
        "dnsfilter_blocked_clients",  # blocked clients
    } <= read
    by_app_and_network = [e for e in exprs if "dnsfilter_blocked_queries_total" in e]
    for expr in by_app_and_network:
        assert 'network=~"$network"' in expr and 'list=~"$list"' in expr, expr
    assert any("by (list)" in e for e in by_app_and_network)
    assert any("by (network)" in e for e in by_app_and_network)
    quantiles = [e for e in exprs if "dnsfilter_query_duration_seconds_bucket" in e]
    assert all(e.startswith("histogram_quantile(") and "(le" in e for e in quantiles)
    assert any("time() - dnsfilter_list_last_reload_timestamp_seconds" in e for e in exprs)


def test_dashboard_variables_are_all_defined() -> None:
    dashboard = promql.load_dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    builtin = {"__rate_interval", "__interval", "__range"}
    for expression in promql.expressions():
        if expression.kind == "rule":
            continue
        used = set(re.findall(r"\$\{?(\w+)", expression.expr))
        assert used <= defined | builtin, expression.source
        promql.substitute_grafana(expression.expr)  # a test value for each


# --- systemd ---------------------------------------------------------------------------------

_UNITS = ("dnsfilter.service", "dnsfilter-lists.service", "dnsfilter-lists.timer")
_DNSFILTER_BIN = "/usr/local/bin/dnsfilter"
#: Where the programs the units run are installed (by pip, or by the Debian package named),
#: whether or not this machine has them: the scratch root gets a stub at each of these paths.
_INSTALLED_PATHS = {
    _DNSFILTER_BIN: "pip",
    "/bin/kill": "procps",
    "/bin/systemctl": "systemd",
    "/usr/bin/git": "git",
}


def _unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys repeat, so configparser will not do)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _exec_paths(text: str) -> set[str]:
    paths = set()
    for key, values in _unit_settings(text).items():
        if key.startswith("Exec"):
            for value in values:
                paths.add(value.lstrip("-@:+!").split()[0])
    return paths


def _systemd_root(tmp_path: Path, units: dict[str, str]) -> Path:
    """A root with the host's own units (targets the units order after) and stub executables.

    verify checks that the first command of each Exec*= exists; stubs are made only at the
    paths in _INSTALLED_PATHS and at paths this machine really has, so a misspelled /bin/kil
    still fails. Every Exec*= path is checked here, not only the first of each kind.
    """
    root = tmp_path / "root"
    for source in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if source.is_dir():
            shutil.copytree(source, root / "usr/lib/systemd/system", symlinks=True)
            break
    else:
        pytest.fail("no /usr/lib/systemd/system: apt-get install systemd")
    (root / "etc/systemd/system").mkdir(parents=True)
    for name, text in units.items():
        (root / "etc/systemd/system" / name).write_text(text)
        for path in _exec_paths(text):
            assert path.startswith("/"), f"{name}: {path} is not absolute"
            assert path in _INSTALLED_PATHS or Path(path).exists(), f"{name}: no {path} here"
            stub = root / path.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    return root


def _verify(root: Path, units: list[str]) -> str:
    """systemd-analyze verify's complaints: it exits 0 on some (unknown keys, bad values)."""
    args = [tool("systemd-analyze", "systemd"), "verify", f"--root={root}", "--man=no", *units]
    result = run(args)
    return (
        (f"exit {result.returncode}\n" if result.returncode else "") + result.stdout + result.stderr
    )


def test_systemd_units_verify(tmp_path: Path) -> None:
    units = {name: (SYSTEMD_DIR / name).read_text() for name in _UNITS}
    root = _systemd_root(tmp_path, units)
    assert _verify(root, list(units)) == ""


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        pytest.param("ProtectSytem=strict", "Unknown key", id="unknown-key"),
        pytest.param("ProtectSystem=strictly", "Failed to parse", id="bad-value"),
        pytest.param("RestrictAddressFamilies=AF_INET AF_INETT", "address family", id="bad-family"),
        pytest.param("SystemCallFilter=@system-servic", "system call group", id="bad-group"),
    ],
)
def test_systemd_verify_would_catch_a_mistake(tmp_path: Path, line: str, complaint: str) -> None:
    """The check above is not vacuous: the same scratch root reports a broken unit."""
    text = (SYSTEMD_DIR / "dnsfilter.service").read_text()
    broken = text.replace("[Service]\n", f"[Service]\n{line}\n", 1)
    root = _systemd_root(tmp_path, {"dnsfilter.service": broken})
    assert complaint in _verify(root, ["dnsfilter.service"])


def test_systemd_unit_is_hardened(tmp_path: Path) -> None:
    settings = _unit_settings((SYSTEMD_DIR / "dnsfilter.service").read_text())
    expected = {
        "DynamicUser": "yes",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "dnsfilter",
        "CacheDirectory": "dnsfilter",
        "ConfigurationDirectory": "dnsfilter",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "ExecStart": f"{_DNSFILTER_BIN} serve --config /etc/dnsfilter/dnsfilter.yaml",
    }
    assert {key: settings.get(key, [""])[-1] for key in expected} == expected
    assert "@system-service" in settings["SystemCallFilter"]
    # verify ignores an unknown capability name in silence: compare with systemd's own list.
    known = run([tool("systemd-analyze", "systemd"), "capability"]).stdout.split()
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        for name in settings[key][-1].split():
            assert name.lower() in known, f"{key}: unknown capability {name}"


def test_systemd_unit_exposure_is_low(tmp_path: Path) -> None:
    """systemd's own sandbox score: 1.6 today; fail if it climbs past 2.0 ("OK" is < 4.0)."""
    root = _systemd_root(
        tmp_path, {"dnsfilter.service": (SYSTEMD_DIR / "dnsfilter.service").read_text()}
    )
    args = [
        tool("systemd-analyze", "systemd"),
        "security",
        "--offline=true",
        f"--root={root}",
        "--threshold=20",
        "--no-pager",
        "dnsfilter.service",
    ]
    result = run(args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def _metrics_ruleset() -> str:
    """The nftables ruleset the unit's comments give for fencing the metrics port."""
    lines = (SYSTEMD_DIR / "dnsfilter.service").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   table inet"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "#   }")
    return "\n".join(line.removeprefix("#   ") for line in lines[start : end + 1]) + "\n"


def test_systemd_unit_metrics_fence_is_a_valid_nftables_ruleset() -> None:
    nft = tool("nft", "nftables")
    ruleset = _metrics_ruleset()
    assert "tcp dport 9153 drop" in ruleset
    result = subprocess.run(
        [nft, "-c", "-f", "-"], input=ruleset, capture_output=True, text=True, timeout=_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    broken = ruleset.replace("ip saddr", "ip sadr", 1)  # the check is not vacuous
    result = subprocess.run(
        [nft, "-c", "-f", "-"], input=broken, capture_output=True, text=True, timeout=_TIMEOUT
    )
    assert result.returncode != 0


def test_systemd_example_config_is_valid() -> None:
    result = check_config(SYSTEMD_DIR / "dnsfilter.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


# --- Container image -------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments (and parser directives) and blank lines, also inside a RUN
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation line at the end"
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _containerfile() -> list[tuple[str, str]]:
    return _instructions((CONTAINER_DIR / "Containerfile").read_text())


def test_containerfile_is_multi_stage_and_runs_as_a_user() -> None:
    stages = _stages(_containerfile())
    assert len(stages) >= 2
    names = [stage[0][1].split()[-1] for stage in stages if " AS " in stage[0][1].upper()]
    final = stages[-1]
    copies_from = [arg for word, arg in final if word == "COPY" and arg.startswith("--from=")]
    assert copies_from, "the runtime stage copies nothing from the build stage"
    for arg in copies_from:
        assert arg.split()[0].removeprefix("--from=") in names[:-1]
    users = [arg for word, arg in final if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    run_after_user = [w for w, _ in final[final.index(("USER", users[-1])) :] if w == "RUN"]
    assert not run_after_user


def test_containerfile_exposes_dns_and_metrics() -> None:
    exposed = {p for w, arg in _containerfile() if w == "EXPOSE" for p in arg.split()}
    assert {"53/udp", "53/tcp"} <= exposed
    assert exposed & {"9153", "9153/tcp"}


def test_containerfile_healthcheck_uses_python() -> None:
    final = _stages(_containerfile())[-1]
    (check,) = [arg for word, arg in final if word == "HEALTHCHECK"]
    command = check[check.index("CMD") :]
    assert "urllib.request" in command and "/healthz" in command
    assert not re.search(r"\b(curl|wget)\b", command)


def test_containerfile_adds_no_url() -> None:
    for word, arg in _containerfile():
        if word == "ADD":
            assert not re.search(r"(https?|git)://|git@", arg), arg


def _healthcheck_code() -> str:
    final = _stages(_containerfile())[-1]
    (check,) = [arg for word, arg in final if word == "HEALTHCHECK"]
    exec_form = yaml.safe_load(check[check.index("CMD") + 3 :])  # a JSON array is YAML
    assert exec_form[:2] == ["python", "-c"]
    return str(exec_form[2])


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def healthz_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_containerfile_healthcheck_passes_and_fails(healthz_server: int) -> None:
    code = _healthcheck_code()
    assert "http://127.0.0.1:9153/healthz" in code
    healthy = code.replace("127.0.0.1:9153", f"127.0.0.1:{healthz_server}")
    assert run([sys.executable, "-c", healthy]).returncode == 0
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = code.replace("127.0.0.1:9153", f"127.0.0.1:{sock.getsockname()[1]}")
        assert run([sys.executable, "-c", closed]).returncode != 0


def _ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus **) as a regex on a relative path."""
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def _in_context(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore lets path (relative to the context) into the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _ignore_pattern(raw[1:] if negate else raw)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = negate
    return included


def test_dockerignore_keeps_what_the_image_copies_and_drops_the_rest() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = []
    for word, arg in _containerfile():
        if word == "COPY" and not arg.startswith("--from="):
            sources.extend(arg.split()[:-1])
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        files = (
            [source]
            if (ROOT / source).is_file()
            else [
                str(p.relative_to(ROOT))
                for p in (ROOT / source).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            ]
        )
        assert files, source
        for file in files:
            assert _in_context(file, patterns), f"{file} is COPYed but .dockerignore drops it"
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "dnsfilter/__pycache__/x.pyc",
    ):
        assert not _in_context(dropped, patterns), dropped


def test_container_config_is_valid_and_is_the_one_the_image_runs() -> None:
    instructions = _containerfile()
    copies = [arg.split() for word, arg in instructions if word == "COPY"]
    (config,) = [args for args in copies if args[0] == "deploy/container/dnsfilter.yaml"]
    destination = config[-1]
    cmd = [arg for word, arg in instructions if word == "CMD"][-1]
    assert yaml.safe_load(cmd) == ["serve", "--config", destination]
    result = check_config(CONTAINER_DIR / "dnsfilter.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    settings = yaml.safe_load((CONTAINER_DIR / "dnsfilter.yaml").read_text())
    assert settings["metrics"]["listen"] == "0.0.0.0:9153"  # the health check's address


# --- Kubernetes ------------------------------------------------------------------------------

_NAMESPACE = "dnsfilter"


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in deploy/kubernetes (kustomization.yaml is kustomize's own)."""
    found = []
    for path in sorted(KUBERNETES_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def _one(kind: str, name: str | None = None, file: str | None = None) -> dict[str, Any]:
    (doc,) = [
        d
        for f, d in _manifests()
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (file is None or f == file)
    ]
    return doc


#: Built-in kinds, which kubernetes-validate has schemas for (the ServiceMonitor is a CRD).
_KUBERNETES_KINDS = [(f, d) for f, d in _manifests() if d["kind"] != "ServiceMonitor"]


@pytest.mark.parametrize(
    "doc",
    [d for _, d in _KUBERNETES_KINDS],
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in _KUBERNETES_KINDS],
)
def test_kubernetes_manifest_validates(doc: dict[str, Any]) -> None:
    """Strict: an unknown field (a typo) is an error, not ignored as the API server would."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")


def test_kubernetes_validation_is_not_vacuous() -> None:
    doc = _one("Deployment")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kubernetes_manifests_are_the_expected_set() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for _, d in _manifests())
    assert kinds == [
        ("ConfigMap", "dnsfilter-config"),
        ("DaemonSet", "dnsfilter"),
        ("Deployment", "dnsfilter"),
        ("Namespace", "dnsfilter"),
        ("NetworkPolicy", "dnsfilter"),
        ("PodDisruptionBudget", "dnsfilter"),
        ("Service", "dnsfilter"),
        ("Service", "dnsfilter-metrics"),
        ("ServiceMonitor", "dnsfilter"),
    ]
    for file, doc in _manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == _NAMESPACE, file


def test_network_policy_opens_dns_to_all_and_metrics_to_monitoring_only() -> None:
    policy = _one("NetworkPolicy")["spec"]
    pod = _one("Deployment")["spec"]["template"]
    assert policy["podSelector"]["matchLabels"] == pod["metadata"]["labels"]
    assert policy["policyTypes"] == ["Ingress"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p.get("protocol", "TCP") for p in container["ports"]}
    dns, metrics = policy["ingress"]
    # DNS from anywhere: the clients come through the load balancer with their own addresses.
    assert "from" not in dns
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {
        ("dns", ports["dns"]),
        ("dns-tcp", ports["dns-tcp"]),
    }
    # Metrics from the monitoring namespace alone: no pod selector, no ipBlock beside it.
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert metrics["ports"] == [{"port": "metrics", "protocol": ports["metrics"]}]


def test_kustomization_lists_the_manifests() -> None:
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    others = {p.name for p in KUBERNETES_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    # daemonset.yaml is the alternative to deployment.yaml, not an addition.
    assert set(resources) == others - {"daemonset.yaml"}
    assert resources[0] == "namespace.yaml"


#: The parts of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1) that
#: servicemonitor.yaml uses; unknown fields are errors, as a typo would be ignored by the CRD.
_DURATION = {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
        "sourceLabels": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
        },
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
    },
}
_SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "matchExpressions": {"type": "array"},
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
            },
        },
    },
}


def test_servicemonitor_structure() -> None:
    monitor = _one("ServiceMonitor")
    jsonschema.Draft202012Validator(_SERVICE_MONITOR_SCHEMA).validate(monitor)
    for endpoint in monitor["spec"]["endpoints"]:
        assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])
    with pytest.raises(jsonschema.ValidationError):  # not vacuous: a typo is caught
        typo = yaml.safe_load(yaml.safe_dump(monitor))
        typo["spec"]["endpoints"][0]["intervall"] = "15s"
        jsonschema.Draft202012Validator(_SERVICE_MONITOR_SCHEMA).validate(typo)


def _seconds(duration: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|h|m|s)", duration))


def _pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = _one(kind)["spec"]["template"]["spec"]
    return spec


def _container(kind: str) -> dict[str, Any]:
    (container,) = _pod_spec(kind)["containers"]
    assert isinstance(container, dict)
    return container


def _ports(kind: str) -> dict[str, dict[str, Any]]:
    return {port["name"]: port for port in _container(kind)["ports"]}


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_workload_security_and_probes(kind: str) -> None:
    pod = _pod_spec(kind)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.get("hostNetwork") is not True
    assert pod["automountServiceAccountToken"] is False
    container = _container(kind)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
    ports = _ports(kind)
    assert ports["metrics"]["containerPort"] == 9153
    assert all("hostPort" not in port for port in ports.values())
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_deployment_runs_three_replicas_that_roll_without_losing_capacity() -> None:
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_kubernetes_wiring(kind: str) -> None:
    workload = _one(kind)
    labels = workload["spec"]["template"]["metadata"]["labels"]
    selector = workload["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    ports = _ports(kind)
    dns = _one("Service", "dnsfilter")
    metrics = _one("Service", "dnsfilter-metrics")
    for service in (dns, metrics):
        assert service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            target = ports[port["targetPort"]]
            assert target["protocol"] == port["protocol"], port
    assert {(p["port"], p["protocol"]) for p in dns["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}
    # Client networks are matched on the source address: the Service must keep it.
    assert dns["spec"]["externalTrafficPolicy"] == "Local"
    assert [p["port"] for p in metrics["spec"]["ports"]] == [9153]
    assert _one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    monitor = _one("ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    assert wanted <= metrics["metadata"]["labels"].items()
    assert not wanted <= dns["metadata"]["labels"].items(), (
        "the monitor would select the DNS Service"
    )
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [_NAMESPACE]
    metric_ports = {p["name"] for p in metrics["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= metric_ports
    # jobLabel names a label of the Service; its value becomes the job ("dnsfilter", which the
    # alert DnsfilterTargetDown and the dashboard's $job variable expect).
    assert metrics["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "dnsfilter"
    # Every mount has its volume; the config volume is the ConfigMap.
    volumes = {v["name"]: v for v in _pod_spec(kind)["volumes"]}
    mounts = {m["mountPath"]: m for m in _container(kind)["volumeMounts"]}
    assert {m["name"] for m in mounts.values()} <= set(volumes)
    config_volume = volumes[mounts["/etc/dnsfilter"]["name"]]
    assert config_volume["configMap"]["name"] == _one("ConfigMap")["metadata"]["name"]


def _mounted_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(_one("ConfigMap")["data"]["dnsfilter.yaml"])
    return data


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_mounted_config_matches_the_pod(kind: str) -> None:
    config = _mounted_config()
    ports = _ports(kind)
    container = _container(kind)
    assert container["args"] == ["serve", "--config", "/etc/dnsfilter/dnsfilter.yaml"]
    listen = {address.rpartition(":")[2] for address in config["server"]["listen"]}
    assert listen == {str(ports["dns"]["containerPort"]), str(ports["dns-tcp"]["containerPort"])}
    host, _, port = config["metrics"]["listen"].rpartition(":")
    assert int(port) == ports["metrics"]["containerPort"]
    assert ipaddress.ip_address(host.strip("[]")).is_unspecified  # probes come to the pod's IP
    # The root filesystem is read-only: the audit store must be on a writable volume.
    audit_dir = str(Path(config["audit"]["sqlite_path"]).parent)
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert audit_dir in writable
    volumes = {v["name"]: v for v in _pod_spec(kind)["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == audit_dir]
    assert "emptyDir" in volumes[mount["name"]] or "persistentVolumeClaim" in volumes[mount["name"]]


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_pod_can_write_where_the_image_writes(kind: str) -> None:
    """readOnlyRootFilesystem: the image's state and cache directories must be volumes."""
    env: dict[str, str] = {}
    for word, arg in _containerfile():
        if word == "ENV":
            for item in arg.split():
                key, _, value = item.partition("=")
                env[key] = value
    writable = {m["mountPath"] for m in _container(kind)["volumeMounts"] if not m.get("readOnly")}
    assert {env["STATE_DIRECTORY"], env["CACHE_DIRECTORY"]} <= writable


def test_configmap_config_and_lists_are_valid(tmp_path: Path) -> None:
    for name, text in _one("ConfigMap")["data"].items():
        (tmp_path / name).write_text(text)
    result = check_config(tmp_path / "dnsfilter.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
