"""Roles in exports: the header counts them, and a named policy's role choice narrows the export."""

from __future__ import annotations

import datetime

from dnsfilter.config import parse_config
from dnsfilter.lists.export import ExportFormat, export_from_config, render
from dnsfilter.lists.yamlformat import parse_yaml_list

LIST = """\
name: apps
title: Apps
vendor: Test
category: other
description: test
references:
  - {url: "https://example.org/", title: t}
domains:
  - {domain: api.app.example, role: backend}
  - {domain: dl.app.example, role: download}
  - {domain: site.app.example, role: [storefront, download]}
"""
CONFIG = """\
networks:
  lan: ["10.0.0.0/8"]
  lab: ["10.1.0.0/16"]
lists:
  apps: {file: apps.yaml}
policies:
  all: {networks: [lan], lists: [apps]}
  backend: {networks: [lab], lists: [{list: apps, roles: [backend]}]}
"""
WHEN = datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)


def _export(policy: str | None) -> str:
    config = parse_config(CONFIG, "cfg.yaml", base=None)
    lists = [parse_yaml_list(LIST, "apps.yaml")]
    return render(ExportFormat.UNBOUND, export_from_config(config, lists, policy, generated=WHEN))


def test_the_header_counts_roles_and_every_role_is_exported() -> None:
    text = _export(None)
    assert "#     roles: backend 1, download 2, storefront 1\n" in text
    for name in ("api.app.example", "dl.app.example", "site.app.example"):
        assert f'local-zone: "{name}." ' in text


def test_a_policy_enforcing_backend_exports_only_backend_entries() -> None:
    text = _export("backend")
    assert "#   apps: 1 domains, 0 exceptions, 0 networks (apps.yaml)\n" in text
    assert 'local-zone: "api.app.example." ' in text
    assert "dl.app.example" not in text and "site.app.example" not in text
