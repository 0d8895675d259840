"""The JSON Schema and the reference table derived from dnsfilter.config's declarations."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dnsfilter.config import default_config_text, generate

REPO = Path(__file__).resolve().parents[3]
SHIPPED = [
    ("default", default_config_text()),
    *[
        (str(p.relative_to(REPO)), p.read_text(encoding="utf-8"))
        for p in sorted((REPO / "deploy").glob("*/dnsfilter.yaml"))
    ],
]


def _data(text: str) -> Any:
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value.isoformat() if isinstance(value, datetime.date) else value

    return plain(yaml.safe_load(text))


def test_the_committed_files_are_what_the_generator_writes() -> None:
    assert generate.CONFIG_SCHEMA.read_text(encoding="utf-8") == generate.schema_text()
    assert generate.REFERENCE.read_text(encoding="utf-8") == generate.reference_text()
    assert generate.main(["--check"]) == 0


def test_the_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(generate.schema_text()))


@pytest.mark.parametrize(("name", "text"), SHIPPED, ids=[name for name, _ in SHIPPED])
def test_every_shipped_config_validates(name: str, text: str) -> None:
    jsonschema.validate(_data(text), generate.config_schema())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("serve: {}\n", id="unknown-top-key"),
        pytest.param("server: {udp_payload_size: 100}\n", id="below-bound"),
        pytest.param("cache: {enabled: 'yes'}\n", id="string-for-boolean"),
        pytest.param("ratelimit: {action: bounce}\n", id="not-a-choice"),
        pytest.param("lists: {bad name: {file: a.yaml}}\n", id="bad-list-name"),
        pytest.param("upstream: {servers: [{port: 53}]}\n", id="server-without-address"),
    ],
)
def test_invalid_configs_are_rejected(text: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_data(text), generate.config_schema())


LISTS = sorted((REPO / "blocklists").glob("*.yaml"))


def test_the_committed_list_schema_is_what_the_generator_writes() -> None:
    committed = generate.LIST_SCHEMA.read_text(encoding="utf-8")
    assert committed == generate.schema_text(generate.list_schema())
    jsonschema.Draft202012Validator.check_schema(json.loads(committed))


@pytest.mark.parametrize("path", LISTS, ids=[p.name for p in LISTS])
def test_every_shipped_list_validates(path: Path) -> None:
    jsonschema.validate(_data(path.read_text(encoding="utf-8")), generate.list_schema())


_LIST_HEAD = (
    "name: x\ntitle: X\nvendor: V\ncategory: video\ndescription: d\n"
    "references: [{url: 'https://a.example', title: t}]\n"
)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(_LIST_HEAD + "domains: [{domain: a.example, mode: sinkhole}]\n", id="mode"),
        pytest.param(_LIST_HEAD + "domains: [{domain: a.example, role: ads}]\n", id="role"),
        pytest.param(_LIST_HEAD + "domains: []\nextra: 1\n", id="unknown-key"),
        pytest.param(
            _LIST_HEAD.replace("category: video", "category: toys") + "domains: []\n",
            id="category",
        ),
        pytest.param(_LIST_HEAD.replace("name: x\n", "") + "domains: []\n", id="no-name"),
    ],
)
def test_invalid_lists_are_rejected(text: str) -> None:
    jsonschema.validate(_data(_LIST_HEAD + "domains: []\n"), generate.list_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_data(text), generate.list_schema())


def test_lint_maps_schema_errors_to_their_yaml_lines() -> None:
    from dnsfilter.config.yamltree import Mapping, parse
    from dnsfilter.lists.lint import _schema_findings

    text = _LIST_HEAD + "domains:\n  - domain: a.example\n    role: ads\n    colour: red\n"
    root, _ = parse(text, "x.yaml")
    assert isinstance(root, Mapping)
    found = {(f.line, f.message.split(":")[0]) for f in _schema_findings(root, "x.yaml", set())}
    assert found == {(9, "schema"), (10, "schema")}
