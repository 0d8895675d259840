"""server.user / server.group: looking the account up, and refusing to half-drop root."""

from __future__ import annotations

import logging
import os
import pwd

import pytest

from dnsfilter.errors import ConfigError, PrivilegeError
from dnsfilter.operate.privileges import Account, check_dropped, drop_privileges, resolve_account

NOBODY = pwd.getpwnam("nobody")


def test_user_by_name_or_number_with_its_primary_group() -> None:
    by_name = resolve_account("nobody")
    assert (by_name.uid, by_name.gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert resolve_account(str(NOBODY.pw_uid)) == by_name
    assert resolve_account("nobody", "daemon").gid == 1


@pytest.mark.parametrize(
    ("user", "group", "problems"),
    [
        pytest.param(
            "no-such-user", None, ["server.user: no user 'no-such-user' on this system"], id="user"
        ),
        pytest.param(
            "nobody", "no-such-group", ["server.group: no group 'no-such-group' on this system"],
            id="group",
        ),
        pytest.param(
            "root", None,
            [
                "server.user: root is what dnsfilter drops; name an unprivileged user",
                "server.group: root's group is what dnsfilter drops; name another",
            ],
            id="root",
        ),
        pytest.param(
            "4000000", None,
            ["server.group: user 4000000 has no passwd entry; set the group too"],
            id="unknown-uid-without-group",
        ),
    ],
)  # fmt: skip
def test_unknown_or_root_accounts_are_config_errors(
    user: str, group: str | None, problems: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_account(user, group)
    assert caught.value.problems == problems


def test_an_unknown_uid_with_a_group_is_taken_as_given() -> None:
    account = resolve_account("4000000", "4000001")
    assert (account.uid, account.gid) == (4_000_000, 4_000_001)


def test_not_root_and_another_user_configured_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setattr(os, "getgid", lambda: 1000)
    with pytest.raises(PrivilegeError, match="not as root, so it cannot switch"):
        drop_privileges(resolve_account("nobody"))
    drop_privileges(None)  # unprivileged, nothing asked: fine
    drop_privileges(Account("me", 1000, "me", 1000))  # already that user: fine


def test_root_without_a_user_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with caplog.at_level(logging.WARNING, "dnsfilter.operate.privileges"):
        drop_privileges(None)
    assert "running as root" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="checks a process that is still root")
def test_check_dropped_sees_root_left_behind() -> None:
    with pytest.raises(PrivilegeError) as caught:
        check_dropped(resolve_account("nobody"))
    message = str(caught.value)
    assert "user ids are (0, 0, 0)" in message
    assert "setuid(0) still works" in message
