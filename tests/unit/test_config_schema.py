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

REPO = Path(__file__).resolve().parents[2]
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
