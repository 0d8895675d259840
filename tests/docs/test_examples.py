"""Every example in README.md and docs/ runs: configs load, lists parse, commands exit as shown.

What a block is comes from the HTML comment before it (tests/docs/markdown.py;
docs/developers/testing.md, "The docs' own tests"). Commands run with bash in a scratch copy of
a scene: the shipped lists in a git repository with some history (`lists diff --git`), the
README's first config as `dnsfilter.yaml` and `/etc/dnsfilter/dnsfilter.yaml` (every `/etc/`
in a command is the scene's), capture files for `monitor`, and an audit store for `report`.
`dnsfilter serve` gets `--listen` and `--metrics-listen` on port 0 and `--upstream` at a
scripted upstream on loopback, is stopped with SIGTERM once it forwards, and must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsfilter.config import load_config
from dnsfilter.lists.formats import parse_list
from tests.docs.markdown import ROOT, Block, blocks, doc_files
from tests.fakes import ScriptedUpstream

pytestmark = pytest.mark.integration

ALL_BLOCKS = [block for page in doc_files() for block in blocks(page)]

#: Blocks the docs mark `not-run`, at most this many: keep it near zero.
MAX_NOT_RUN = 3

_TIMEOUT = 120
_START_TIMEOUT = 20.0
_CONFIG_MARKERS = ("", "file", "fragment")


@dataclass(frozen=True)
class Command:
    """One `dnsfilter ...` command of a block, with what it must do."""

    block: Block
    index: int  #: its place among the block's commands
    text: str  #: the shell command line, `dnsfilter` first
    exit: int
    output: str | None  #: the exact stdout a transcript shows, when the block says `output`

    @property
    def id(self) -> str:
        return f"{self.block.where}+{self.index}"


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


def _dnsfilter_part(line: str) -> str | None:
    """The `dnsfilter ...` command of a shell line (the last one of an && chain)."""
    for part in reversed(line.split("&&")):
        words = part.split()
        if words and (words[0] == "dnsfilter" or words[0].endswith("/bin/dnsfilter")):
            return "dnsfilter " + part.strip().split(None, 1)[1]
    return None


def _commands(block: Block) -> list[Command]:
    expected = int(block.argument) if block.marker == "exit" else 0
    found: list[Command] = []
    if block.info == "sh":
        for line in _logical_lines(block.text):
            command = _dnsfilter_part(line)
            if command is not None:
                found.append(Command(block, len(found), command, expected, None))
    elif block.info == "":  # a transcript: `$ dnsfilter ...` lines, each followed by its output
        lines = block.text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ dnsfilter "):
                end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("$ ")), None)
                shown = "\n".join(lines[i + 1 : end]) + "\n"
                output = shown if block.marker == "output" else None
                found.append(Command(block, len(found), line[2:], expected, output))
    return found


CONFIGS = [b for b in ALL_BLOCKS if b.info == "yaml" and b.marker in _CONFIG_MARKERS]
LISTS = [b for b in ALL_BLOCKS if b.marker == "list"]
COMMANDS = [c for b in ALL_BLOCKS if b.marker != "not-run" for c in _commands(b)]
NOT_RUN = [b for b in ALL_BLOCKS if b.marker == "not-run"]


def _ids(blocks: list[Block]) -> list[str]:
    return [block.where for block in blocks]


# -- configs and lists ------------------------------------------------------------------------


def _nest(path: str, data: Any) -> Any:
    for key in reversed(path.split(".")) if path else ():
        data = {key: data}
    return data


@pytest.mark.parametrize("block", CONFIGS, ids=_ids(CONFIGS))
def test_config_example_loads(block: Block, tmp_path: Path) -> None:
    text = block.text
    if block.marker == "fragment":  # merged into a minimal config: every key is optional
        text = yaml.safe_dump(_nest(block.argument, yaml.safe_load(text)))
    path = tmp_path / "dnsfilter.yaml"
    path.write_text(text)
    load_config(path)  # raises ConfigError with file:line for anything wrong


@pytest.mark.parametrize("block", LISTS, ids=_ids(LISTS))
def test_list_example_parses(block: Block) -> None:
    parsed = parse_list(block.text, block.where, "example", block.argument or None)
    assert parsed.domains, f"{block.where}: the example holds no entry"
    assert list(parsed.warnings) == [], "an example shows lines the parser skips"


def test_unrun_examples_are_few_and_say_why() -> None:
    assert all(block.argument for block in NOT_RUN), [b.where for b in NOT_RUN if not b.argument]
    assert len(NOT_RUN) <= MAX_NOT_RUN, [f"{b.where}: {b.argument}" for b in NOT_RUN]


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = [b for b in blocks(ROOT / "README.md") if b.info == "sh"]
    assert any(b.text == "bash scripts/test.sh\n" for b in readme)
    assert "exec bash ./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_every_kind_of_example_is_found() -> None:
    """The collection itself: an empty list here would make every test above pass vacuously."""
    assert len(CONFIGS) >= 4 and LISTS
    kinds = {c.text.split()[1] for c in COMMANDS}
    assert {"serve", "check-config", "explain", "lists", "egress", "monitor", "report"} <= kinds
    assert any(c.output is not None for c in COMMANDS)


# -- commands ---------------------------------------------------------------------------------


def _first_config() -> str:
    readme = blocks(ROOT / "README.md")
    return next(b.text for b in readme if b.marker == "file" and b.argument == "dnsfilter.yaml")


def _git(scene: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=docs", "-c", "user.email=docs@example.test", *args],
        cwd=scene,
        check=True,
        capture_output=True,
        timeout=60,
    )


_PCAP = """
import sys
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap
packets = [
    Ether() / IP(src="10.1.2.3", dst="8.8.8.8") / UDP(sport=40000, dport=53)
    / DNS(rd=1, qd=DNSQR(qname="weixin.qq.com")),
    Ether() / IP(src="10.1.2.3", dst="1.1.1.1") / TCP(sport=40001, dport=853, flags="S"),
    Ether() / IP(src="10.1.2.4", dst="10.0.0.53") / UDP(sport=40002, dport=53)
    / DNS(rd=1, qd=DNSQR(qname="debian.org")),
]
for path in sys.argv[1:]:
    wrpcap(path, packets)
"""


def _run(scene: Path, command: str) -> subprocess.CompletedProcess[str]:
    script = 'dnsfilter() { "$DOCS_PYTHON" -m dnsfilter "$@"; }\nset -o pipefail\n' + _in_scene(
        scene, command
    )
    return subprocess.run(
        ["bash", "-c", script],
        cwd=scene,
        env=_env(scene),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )


def _env(scene: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DOCS_PYTHON": sys.executable,
        "STATE_DIRECTORY": str(scene / "state"),
        "CACHE_DIRECTORY": str(scene / "cache"),
        "PYTHONUNBUFFERED": "1",
    }


def _in_scene(scene: Path, text: str) -> str:
    return re.sub(r"(?<![\w./])/etc/", f"{scene}/etc/", text)


@pytest.fixture(scope="session")
def base_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = tmp_path_factory.mktemp("scene")
    lists = scene / "blocklists"
    lists.mkdir()
    shipped = sorted((ROOT / "blocklists").glob("*.yaml"))
    # History for `lists diff --git`: v1.2 (= origin/main = HEAD~1) without bypass.yaml,
    # v1.3 (= HEAD) with it.
    for path in shipped:
        if path.name != "bypass.yaml":
            shutil.copy(path, lists / path.name)
    _git(scene, "init", "-q")
    _git(scene, "add", "-A")
    _git(scene, "commit", "-qm", "v1.2")
    _git(scene, "tag", "v1.2")
    _git(scene, "update-ref", "refs/remotes/origin/main", "HEAD")
    shutil.copy(ROOT / "blocklists" / "bypass.yaml", lists / "bypass.yaml")
    _git(scene, "add", "-A")
    _git(scene, "commit", "-qm", "v1.3")
    _git(scene, "tag", "v1.3")
    (scene / "old").mkdir()
    shutil.copy(lists / "wechat.yaml", scene / "old" / "wechat.yaml")
    (scene / "my-lists").mkdir()
    shutil.copy(lists / "tiktok.yaml", scene / "my-lists" / "tiktok.yaml")
    extra = (lists / "kaspersky.yaml").read_text().replace("name: kaspersky", "name: extra", 1)
    (scene / "extra.yaml").write_text(extra)
    config = _first_config()
    (scene / "dnsfilter.yaml").write_text(config)
    for folder in ("etc/dnsfilter", "etc/unbound", "etc/dnsmasq.d", "state", "cache"):
        (scene / folder).mkdir(parents=True)
    (scene / "etc" / "dnsfilter" / "dnsfilter.yaml").write_text(config)
    subprocess.run(
        [sys.executable, "-c", _PCAP, "capture.pcap", "office.pcap"],
        cwd=scene,
        check=True,
        timeout=_TIMEOUT,
    )
    # An audit store for `dnsfilter report`: the monitor's events on the capture.
    seeded = _run(scene, "dnsfilter monitor --pcap capture.pcap --config dnsfilter.yaml")
    assert seeded.returncode == 0, seeded.stderr
    assert (scene / "state" / "audit.sqlite3").exists()
    return scene


@pytest.fixture
def scene(base_scene: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "scene"
    shutil.copytree(base_scene, copy, symlinks=True)
    return copy


def _save_files(scene: Path, command: Command) -> None:
    """The `file:` blocks of the command's page that come before it, saved where they say."""
    for block in blocks(command.block.path):
        if block.line >= command.block.line:
            break
        if block.marker == "file":
            name = block.argument.lstrip("/")
            (scene / name).parent.mkdir(parents=True, exist_ok=True)
            (scene / name).write_text(block.text)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_command_example_runs(command: Command, scene: Path) -> None:
    _save_files(scene, command)
    if command.text.split()[1] == "serve":
        _serve(scene, command)
        return
    result = _run(scene, command.text)
    assert result.returncode == command.exit, (
        f"{command.id}: {command.text}\nexit {result.returncode}, "
        f"documented {command.exit}\n{result.stderr}"
    )
    if command.output is not None:
        assert result.stdout == command.output


def _serve(scene: Path, command: Command) -> None:
    argv = shlex.split(_in_scene(scene, command.text), comments=True)
    ports = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
    with ScriptedUpstream(host="127.0.0.1") as upstream:
        process = subprocess.Popen(
            [sys.executable, "-m", "dnsfilter", *argv[1:], *ports, "--upstream", upstream.address],
            cwd=scene,
            env=_env(scene),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        log: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                log.append(line)
                if "forwarding to" in line:
                    ready.set()
            ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            started = ready.wait(_START_TIMEOUT) and process.poll() is None
            process.send_signal(signal.SIGTERM)
            status = process.wait(15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)
            reader.join(5)
            assert process.stderr is not None
            process.stderr.close()
    text = "".join(log)
    assert started, f"{command.id}: {command.text} did not start:\n{text}"
    assert "listening on 127.0.0.1:" in text, text
    assert status == 0, f"{command.id}: exit {status} after SIGTERM, documented 0\n{text}"
