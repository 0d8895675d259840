"""dnsfilter.datapath.policy: a policy's role choice per list, in one DomainTable walk."""

from __future__ import annotations

import pytest

from dnsfilter.config import parse_config
from dnsfilter.datapath.policy import Action, build_policy, role_slots
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
  - {domain: app.example, role: storefront}
  - {domain: api.app.example, role: backend}
  - {domain: dl.example, role: download}
  - {domain: old.example}
exceptions:
  - {domain: help.app.example}
networks:
  - {prefix: 192.0.2.0/24}
"""
CONFIG = """\
networks:
  all: ["10.0.0.0/24"]
  backend: ["10.0.1.0/24"]
  download: ["10.0.2.0/24"]
lists:
  apps: {file: apps.yaml}
policies:
  all: {networks: [all], lists: [apps]}
  backend: {networks: [backend], lists: [{list: apps, roles: [backend]}]}
  download: {networks: [download], lists: [{list: apps, roles: [download, telemetry]}]}
"""
APPS = parse_yaml_list(LIST, "apps.yaml")
POLICY = build_policy(parse_config(CONFIG, "cfg.yaml", base=None), [APPS])


@pytest.mark.parametrize(
    ("client", "qname", "action", "entry"),
    [
        pytest.param(
            "10.0.0.1", "www.app.example", Action.BLOCK, "app.example", id="all-storefront"
        ),
        pytest.param("10.0.0.1", "x.dl.example", Action.BLOCK, "dl.example", id="all-download"),
        pytest.param("10.0.1.1", "www.app.example", Action.ALLOW, "", id="backend-storefront"),
        pytest.param(
            "10.0.1.1", "v.api.app.example", Action.BLOCK, "api.app.example", id="backend"
        ),
        pytest.param("10.0.1.1", "dl.example", Action.ALLOW, "", id="backend-download"),
        pytest.param("10.0.1.1", "old.example", Action.BLOCK, "old.example", id="role-less-blocks"),
        pytest.param("10.0.2.1", "dl.example", Action.BLOCK, "dl.example", id="download"),
        pytest.param("10.0.2.1", "api.app.example", Action.ALLOW, "", id="download-backend"),
        pytest.param("10.0.0.1", "help.app.example", Action.ALLOW, "", id="exception-all"),
    ],
)
def test_roles_per_policy(client: str, qname: str, action: Action, entry: str) -> None:
    verdict = POLICY.decide(client, qname)
    assert (verdict.action, verdict.entry) == (action, entry)
    if action is Action.BLOCK:
        assert verdict.list_name == "apps"


def test_each_distinct_choice_is_one_more_slot_and_networks_go_with_backend() -> None:
    config = parse_config(CONFIG, "cfg.yaml", base=None)
    slots, masks = role_slots(config.policies, [APPS])
    assert [len(s.domains) for s in slots] == [4, 2, 2]
    assert [len(s.networks) for s in slots] == [1, 1, 0]
    assert masks == {"all": 0b001, "backend": 0b010, "download": 0b100}


def test_no_choice_no_extra_slot() -> None:
    config = parse_config(
        "networks:\n  all: [10.0.0.0/24]\nlists:\n  apps: {file: apps.yaml}\n"
        "policies:\n  all: {networks: [all], lists: [apps]}\n",
        "cfg.yaml",
        base=None,
    )
    slots, masks = role_slots(config.policies, [APPS])
    assert slots == [APPS] and masks == {"all": 1}
