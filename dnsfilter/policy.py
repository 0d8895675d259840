"""The blocking decision: which network a client is in, and whether its lists block a name.

Pure and synchronous: no I/O, no logging. Matching walks the query name's suffixes with
one dict lookup each, so its cost grows with the number of labels, not with list size.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dnsfilter.blocking import BlockAnswers, BlockMode
from dnsfilter.config import RESERVED_NETWORK as NO_NETWORK
from dnsfilter.config import Config, IPNetwork, PolicyConfig
from dnsfilter.lists.model import BlockList, Category

#: Distinct client addresses remembered by the network lookup before it starts afresh.
_CLIENT_MEMO_LIMIT = 65536


class Action(enum.Enum):
    ALLOW = "allow"  #: resolve normally
    BLOCK = "block"  #: answer from the policy's blocking mode
    REFUSE = "refuse"  #: the client is in no configured network


@dataclass(frozen=True, slots=True)
class Rule:
    """What applies to the clients of one network."""

    network: str
    policy: str
    mask: int  #: bits of the lists this policy enforces in the DomainTable
    answers: BlockAnswers


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    rule: Rule | None = None
    list_name: str = ""
    category: Category = Category.OTHER
    entry: str = ""  #: the list entry that matched (for explain; never a metric label)
    mode: BlockMode | None = None  #: the entry's own mode, when it overrides the policy's

    @property
    def network(self) -> str:
        return self.rule.network if self.rule is not None else NO_NETWORK


REFUSE = Verdict(Action.REFUSE)


class NetworkMap:
    """Longest-prefix match of client addresses to configured network names."""

    def __init__(self, networks: Iterable[tuple[str, Iterable[IPNetwork]]]) -> None:
        by_length: dict[tuple[int, int], dict[int, str]] = {}
        for name, prefixes in networks:
            for prefix in prefixes:
                table = by_length.setdefault((prefix.version, prefix.prefixlen), {})
                table[int(prefix.network_address)] = name
        # Longest prefixes first, as (shift to the network address, table) per version.
        self._by_version: dict[int, list[tuple[int, dict[int, str]]]] = {4: [], 6: []}
        for (version, length), table in sorted(by_length.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            self._by_version[version].append((bits - length, table))
        self._memo: dict[str, str | None] = {}

    def lookup(self, address: str) -> str | None:
        memo = self._memo
        try:
            return memo[address]
        except KeyError:
            pass
        result = self._lookup(address)
        if len(memo) >= _CLIENT_MEMO_LIMIT:
            memo.clear()
        memo[address] = result
        return result

    def _lookup(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        for shift, table in self._by_version[ip.version]:
            name = table.get((value >> shift) << shift)
            if name is not None:
                return name
        return None


class DomainTable:
    """Every list's entries, exceptions and the allowlist in one dict of bitmasks.

    Bit i marks an entry of list i, bit n+i an exception of list i (n lists), bit 2n the
    allowlist. One walk over a name's suffixes answers for any combination of lists.
    """

    def __init__(self, lists: Sequence[BlockList], allowlist: Iterable[str] = ()) -> None:
        self.lists = tuple(lists)
        count = len(self.lists)
        self._count = count
        self._all_lists = (1 << count) - 1
        self._allow_bit = 1 << (2 * count)
        table: dict[str, int] = {}
        overrides: dict[tuple[int, str], BlockMode] = {}
        for index, blocklist in enumerate(self.lists):
            bit = 1 << index
            for entry in blocklist.domains:
                table[entry.domain] = table.get(entry.domain, 0) | bit
                if entry.mode is not None:
                    overrides[(index, entry.domain)] = entry.mode
            for entry in blocklist.exceptions:
                table[entry.domain] = table.get(entry.domain, 0) | (bit << count)
        for name in allowlist:
            table[name] = table.get(name, 0) | self._allow_bit
        self._table = table
        self._overrides = overrides
        self._index = {blocklist.name: index for index, blocklist in enumerate(self.lists)}

    def __len__(self) -> int:
        return len(self._table)

    def mask(self, names: Iterable[str]) -> int:
        """The bits of the named lists (names must be loaded lists)."""
        mask = 0
        for name in names:
            mask |= 1 << self._index[name]
        return mask

    def match(self, qname: str, mask: int) -> tuple[int, str] | None:
        """(list index, matching entry) of the most specific block, or None if allowed."""
        get = self._table.get
        hits: list[tuple[str, int]] = []
        excepted = 0
        name = qname
        while True:
            bits = get(name)
            if bits is not None:
                if bits & self._allow_bit:
                    return None
                excepted |= bits >> self._count
                if bits & mask:
                    hits.append((name, bits & mask))
            dot = name.find(".")
            if dot < 0:
                break
            name = name[dot + 1 :]
        for entry, bits in hits:
            bits &= ~excepted
            if bits:
                return (bits & -bits).bit_length() - 1, entry
        return None

    def override(self, index: int, entry: str) -> BlockMode | None:
        return self._overrides.get((index, entry))


class Policy:
    """Decides ALLOW, BLOCK or REFUSE for a client address and a query name."""

    def __init__(self, networks: NetworkMap, table: DomainTable, rules: dict[str, Rule]) -> None:
        self.networks = networks
        self.table = table
        self.rules = rules
        self._allow = {name: Verdict(Action.ALLOW, rule) for name, rule in rules.items()}

    def decide(self, client_address: str, qname: str) -> Verdict:
        network = self.networks.lookup(client_address)
        if network is None:
            return REFUSE
        rule = self.rules[network]
        if rule.mask:
            hit = self.table.match(qname, rule.mask)
            if hit is not None:
                index, entry = hit
                blocklist = self.table.lists[index]
                return Verdict(
                    Action.BLOCK,
                    rule,
                    blocklist.name,
                    blocklist.category,
                    entry,
                    self.table.override(index, entry),
                )
        return self._allow[network]


def build_policy(config: Config, lists: Sequence[BlockList]) -> Policy:
    """The Policy for a validated config and its loaded lists (in config order)."""
    table = DomainTable(lists, config.allowlist)
    networks = NetworkMap((n.name, n.prefixes) for n in config.networks)
    rules: dict[str, Rule] = {}
    for policy in config.policies:
        answers = _answers(policy)
        mask = table.mask(policy.lists)
        for network in policy.networks:
            rules[network] = Rule(network, policy.name, mask, answers)
    return Policy(networks, table, rules)


def _answers(policy: PolicyConfig) -> BlockAnswers:
    return BlockAnswers(policy.mode, policy.ttl, policy.sinkhole_ipv4, policy.sinkhole_ipv6)
