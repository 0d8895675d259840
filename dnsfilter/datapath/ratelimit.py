"""Per-client limits: a query rate (token bucket) and a cap on queries being resolved at once.

A client is an IPv4 address or an IPv6 /64 (one host usually owns a whole /64, so limiting
single IPv6 addresses would limit nothing). The bucket is kept in its GCRA form (the
"virtual scheduling" form of a token bucket, as in ATM and Redis' redis-cell): one float per
client, the time at which its bucket would be full again, so a check is two dict lookups and
some arithmetic on the hot path. A bucket whose time has passed is full, exactly as if the
client had never been seen, so idle clients can be forgotten without changing any answer.

Pure and synchronous: no I/O, no asyncio, no clock of its own (the caller passes ``now``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: A client's bucket key: the IPv4 address as text, or the first 8 octets of an IPv6 address.
ClientKey = str | bytes
#: How long a client counts in dnsfilter_ratelimited_clients after its last limited query.
LIMITED_WINDOW = 60.0

_EXEMPT = ""  #: the memo's value for an exempt address (no real key is empty)


class ClientLimits:
    """Token buckets and in-flight counts per client, bounded to max_clients clients."""

    __slots__ = (
        "_exempt",
        "_keys",
        "_tat",
        "burst_window",
        "inflight",
        "interval",
        "limited",
        "max_clients",
        "max_inflight",
    )

    def __init__(
        self,
        rate: float,
        burst: int,
        max_inflight: int,
        max_clients: int,
        exempt: Iterable[IPNetwork] = (),
    ) -> None:
        """rate in queries per second (0: no rate limit); max_inflight 0: no cap."""
        #: seconds one query uses up; 0 when the rate is unlimited
        self.interval = 1.0 / rate if rate > 0 else 0.0
        #: how far ahead of now a bucket may be scheduled: burst queries back to back (plus
        #: a hair, so that float rounding never costs a query sent exactly at the rate)
        self.burst_window = (burst + 1e-6) * self.interval
        self.max_inflight = max_inflight
        self.max_clients = max_clients
        self._exempt = tuple(exempt)
        self._keys: dict[str, ClientKey] = {}  #: address -> key ("" when exempt)
        self._tat: dict[ClientKey, float] = {}  #: key -> when its bucket is full again
        #: key -> queries being resolved now (present only while above zero)
        self.inflight: dict[ClientKey, int] = {}
        #: key -> when it was last limited, for the gauge
        self.limited: dict[ClientKey, float] = {}

    def key(self, address: str) -> ClientKey | None:
        """The client's bucket key, or None when its address is in an exempt network."""
        key = self._keys.get(address)
        if key is None:
            key = self._key_for(address)
            keys = self._keys
            if len(keys) >= self.max_clients:
                keys.clear()  # a flood of sources must not grow the memo; it refills cheaply
            keys[address] = key
        return key or None

    def _key_for(self, address: str) -> ClientKey:
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return address  # not an IP (a test's fake peer): its own bucket
        if any(ip in network for network in self._exempt if network.version == ip.version):
            return _EXEMPT
        if ip.version == 6:
            return socket.inet_pton(socket.AF_INET6, str(ip))[:8]
        return address

    def allow(self, key: ClientKey, now: float) -> bool:
        """Take one token from the key's bucket: False when it is empty (query over the rate).

        GCRA: tat is when the bucket would be full again. A query moves it one interval later;
        it is allowed if that leaves tat at most burst_window after now.
        """
        tat = self._tat.get(key)
        if tat is None or tat < now:
            if tat is None and len(self._tat) >= self.max_clients:
                self._evict(now)
            tat = now
        tat += self.interval
        if tat - now > self.burst_window:
            self._limited(key, now)
            return False
        self._tat[key] = tat
        return True

    def _evict(self, now: float) -> None:
        """Make room: forget full buckets; if too few were full, the oldest quarter as well.

        Forgetting a full bucket changes nothing. Forgetting a busy one gives that client a
        fresh burst, so under a flood of more than max_clients sources the limit is loosened
        for the longest-known of them, never refused to a new one.
        """
        tat = self._tat
        for key in [key for key, when in tat.items() if when <= now]:
            del tat[key]
        excess = len(tat) - self.max_clients * 3 // 4
        if excess > 0:
            for key in list(tat)[:excess]:  # dicts keep insertion order: the oldest first
                del tat[key]

    def _limited(self, key: ClientKey, now: float) -> None:
        limited = self.limited
        if key not in limited and len(limited) >= self.max_clients:
            self.limited_clients(now)  # prunes the expired
            if len(limited) >= self.max_clients:
                limited.clear()
        limited[key] = now

    def limited_clients(self, now: float) -> int:
        """Clients limited within the last LIMITED_WINDOW seconds (forgets older ones)."""
        horizon = now - LIMITED_WINDOW
        limited = self.limited
        for key in [key for key, when in list(limited.items()) if when < horizon]:
            limited.pop(key, None)
        return len(limited)

    @property
    def tracked(self) -> int:
        """Buckets held now (at most max_clients)."""
        return len(self._tat)

    def over_inflight(self, key: ClientKey) -> bool:
        """Is the client at its cap of queries being resolved at once?"""
        return 0 < self.max_inflight <= self.inflight.get(key, 0)

    def begin(self, key: ClientKey) -> None:
        """One more of the client's queries is being resolved."""
        inflight = self.inflight
        inflight[key] = inflight.get(key, 0) + 1

    def end(self, key: ClientKey) -> None:
        """One of the client's resolutions finished (or was cancelled)."""
        inflight = self.inflight
        left = inflight.get(key, 0) - 1
        if left > 0:
            inflight[key] = left
        else:
            inflight.pop(key, None)
