"""Dropping root: once every socket is bound, become server.user (and server.group).

Two ways to serve port 53 without running as root (docs/operators/deploy.md, "Privileges"):

* start as root with ``server.user`` set: the listeners and the metrics endpoint are bound
  first; then the process seals itself (PR_SET_NO_NEW_PRIVS, every capability dropped from
  the bounding set while it still holds CAP_SETPCAP, the ambient set cleared), calls
  setgroups([]), setresgid and setresuid, and checks that no way back to root (nor any
  capability, nor a set-uid program that could give one) is left;
* start as the unprivileged user with CAP_NET_BIND_SERVICE (systemd AmbientCapabilities=),
  ``server.user`` unset or naming that same user.
"""

from __future__ import annotations

import ctypes
import errno
import grp
import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from dnsfilter.errors import ConfigError, PrivilegeError

log = logging.getLogger(__name__)

#: prctl(2) options (linux/prctl.h).
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
#: Where the kernel says its highest capability number; CAP_CHECKPOINT_RESTORE (40) if absent.
CAP_LAST_CAP = Path("/proc/sys/kernel/cap_last_cap")
_DEFAULT_LAST_CAP = 40


@dataclass(frozen=True, slots=True)
class Account:
    """The user and group to run as, looked up before binding."""

    user: str
    uid: int
    group: str
    gid: int

    def __str__(self) -> str:
        return f"{self.user} ({self.uid}), group {self.group} ({self.gid})"


def resolve_account(user: str, group: str | None = None) -> Account:
    """Look up server.user and server.group (names or numbers); raise ConfigError if unknown."""
    problems = []
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            raise ConfigError([f"server.user: no user {user!r} on this system"]) from None
        uid, gid, user_name = int(user), None, user
    else:
        uid, gid, user_name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if uid == 0:
        problems.append("server.user: root is what dnsfilter drops; name an unprivileged user")
    group_name = ""
    if group is not None:
        try:
            group_entry = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
        except KeyError:
            if not group.isdigit():
                problems.append(f"server.group: no group {group!r} on this system")
            gid, group_name = int(group) if group.isdigit() else None, group
        else:
            gid, group_name = group_entry.gr_gid, group_entry.gr_name
    elif gid is None:
        problems.append(f"server.group: user {user} has no passwd entry; set the group too")
    if gid == 0:
        problems.append("server.group: root's group is what dnsfilter drops; name another")
    if problems:
        raise ConfigError(problems)
    assert gid is not None
    if not group_name:
        try:
            group_name = grp.getgrgid(gid).gr_name
        except KeyError:
            group_name = str(gid)
    return Account(user_name, uid, group_name, gid)


def drop_privileges(account: Account | None) -> None:
    """Become account if running as root; check nothing of root is left. Call once bound.

    Raises PrivilegeError when a switch is needed but impossible (not root and not already
    that user) or did not take.
    """
    if os.geteuid() != 0:
        if account is not None and (os.getuid(), os.getgid()) != (account.uid, account.gid):
            raise PrivilegeError(
                f"server.user is {account} but dnsfilter runs as uid {os.getuid()} "
                f"gid {os.getgid()}, not as root, so it cannot switch: start it as root, "
                f"or as {account.user} with CAP_NET_BIND_SERVICE"
            )
        return
    if account is None:
        log.warning(
            "running as root: set server.user (or --user) to drop privileges once bound, "
            "or run as a user with CAP_NET_BIND_SERVICE"
        )
        return
    try:
        # Sealed first: the bounding set can only be emptied while CAP_SETPCAP is held.
        seal()
        os.setgroups([])
        os.setresgid(account.gid, account.gid, account.gid)
        os.setresuid(account.uid, account.uid, account.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot switch to {account}: {exc.strerror or exc}") from None
    check_dropped(account)
    log.info("switched to user %s", account)


def seal() -> None:
    """Leave no way back to privilege, whatever this process runs later: no_new_privs (a
    set-uid or file-capability program gains nothing), an empty capability bounding set
    (nothing can be regained, even by a uid 0 again), an empty ambient set. Needs root
    (CAP_SETPCAP) for the bounding set; raises OSError when a step is refused."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    for capability in range(_last_cap() + 1):
        try:
            _prctl(PR_CAPBSET_DROP, capability)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a number this kernel does not know
                raise
    try:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # before Linux 4.3 there is no ambient set to clear
            raise


def _last_cap() -> int:
    try:
        return int(CAP_LAST_CAP.read_text())
    except (OSError, ValueError):
        return _DEFAULT_LAST_CAP


def _prctl(option: int, arg2: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    ulong = ctypes.c_ulong
    result: int = libc.prctl(ctypes.c_int(option), ulong(arg2), ulong(0), ulong(0), ulong(0))
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl({option}): {os.strerror(code)}")
    return result


def check_dropped(account: Account) -> None:
    """Raise PrivilegeError unless every id is account's and root cannot be regained."""
    problems = []
    if os.getresuid() != (account.uid,) * 3:
        problems.append(f"user ids are {os.getresuid()}")
    if os.getresgid() != (account.gid,) * 3:
        problems.append(f"group ids are {os.getresgid()}")
    if set(os.getgroups()) - {account.gid}:
        problems.append(f"supplementary groups {os.getgroups()} remain")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        problems.append("setuid(0) still works")
    status = _status()
    for field, what in (("CapEff", "capabilities"), ("CapBnd", "bounding set capabilities"),
                        ("CapAmb", "ambient capabilities")):  # fmt: skip
        left = int(status.get(field, "0"), 16)
        if left:
            problems.append(f"{what} {left:#x} remain")
    if status.get("NoNewPrivs", "1") != "1":
        problems.append("no_new_privs is not set")
    if problems:
        raise PrivilegeError(f"switching to {account} left root behind: " + "; ".join(problems))


def _status() -> dict[str, str]:
    """The fields of /proc/self/status (none where /proc is not there to tell)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    return {
        key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())
    }
