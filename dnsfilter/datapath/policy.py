"""The blocking decision: which network a client is in, and whether its lists block a name.

Pure and synchronous: no I/O, no logging. Matching walks the query name's suffixes with
one dict lookup each, so its cost grows with the number of labels, not with list size.
"""

from __future__ import annotations

import enum
import ipaddress
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import or_
from typing import NamedTuple

from dnsfilter.config import RESERVED_NETWORK as NO_NETWORK
from dnsfilter.config import Config, IPNetwork, PolicyConfig
from dnsfilter.datapath.blocking import BlockAnswers, BlockMode
from dnsfilter.datapath.wire import QType, ResponseScan, read_name
from dnsfilter.errors import FormatError
from dnsfilter.lists.model import (
    BlockList,
    Category,
    Role,
    entries_with_modes,
    entry_names,
    select_roles,
)
from dnsfilter.names import plain_tail

_DNAME = 39
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
    cname_mask: int = 0  #: lists whose names also block answers that CNAME into them
    address_mask: int = 0  #: lists whose networks block answers with addresses inside them
    #: a query with RD=0 may be answered from the cache (else it is REFUSED)
    non_recursive_cache: bool = False


class Verdict(NamedTuple):
    """A NamedTuple rather than a frozen dataclass: a blocked query builds one, at a third
    of the cost."""

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
_BLOCK = Action.BLOCK
_new_tuple = tuple.__new__  #: a NamedTuple without its Python-level __new__, on the hot path


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


@dataclass(frozen=True, slots=True)
class ListMeta:
    """What the query path keeps of a loaded list: its entries live in the DomainTable."""

    name: str
    category: Category
    source: str


class Inspection(NamedTuple):
    cname_bits: int  #: lists that block a name the answer CNAMEs (or DNAMEs) into
    address_bits: int  #: lists whose networks contain an address in the answer
    triggers: dict[int, str]  #: per list index, the first name or address that hit it


def _note(triggers: dict[int, str], bits: int, what: str) -> None:
    while bits:
        low = bits & -bits
        triggers.setdefault(low.bit_length() - 1, what)
        bits ^= low


class AddressTable:
    """The lists' `networks:` prefixes, as bitmasks of lists per prefix."""

    def __init__(self, lists: Sequence[BlockList]) -> None:
        by_length: dict[tuple[int, int], dict[int, int]] = {}
        mask = 0
        for index, blocklist in enumerate(lists):
            for entry in blocklist.networks:
                prefix = entry.prefix
                table = by_length.setdefault((prefix.version, prefix.prefixlen), {})
                key = int(prefix.network_address)
                table[key] = table.get(key, 0) | (1 << index)
                mask |= 1 << index
        self.lists_mask = mask
        self._by_size: dict[int, list[tuple[int, dict[int, int]]]] = {4: [], 16: []}
        for (version, length), table in by_length.items():
            bits = 32 if version == 4 else 128
            self._by_size[4 if version == 4 else 16].append((bits - length, table))

    def __bool__(self) -> bool:
        return self.lists_mask != 0

    def bits(self, packed: bytes) -> int:
        """The lists whose networks contain this packed IPv4 or IPv6 address."""
        value = int.from_bytes(packed, "big")
        found = 0
        for shift, table in self._by_size[len(packed)]:
            found |= table.get((value >> shift) << shift, 0)
        return found


#: Above this many names the table is packed into arrays: a dict costs about 75 bytes a
#: name, the packed table 20, at about 0.2 µs more per lookup.
PACKED_ABOVE = 100_000


class PackedTable:
    """An open-addressing hash table in two flat arrays: int keys to int bitmasks.

    Linear probing at a load factor of at most one half; 0 marks an empty slot (a key of 0,
    one hash in 2**64, is stored as 1: a harmless false match).
    """

    def __init__(self, groups: Sequence[tuple[Iterable[int], int]], capacity: int) -> None:
        """Every group's keys, each key's value the OR of the bits of the groups it is in.

        capacity is at least the number of distinct keys. Filled straight from the groups:
        a dict merging them first would cost 0.15 s and 80 MB more for a million keys.
        """
        size = 1 << max(4, (2 * capacity).bit_length())
        mask = size - 1
        widest = max((bits for _, bits in groups), default=0).bit_length()
        keys = array("q", bytes(8 * size))
        values = array("B" if widest <= 8 else "H" if widest <= 16 else "Q")
        values.frombytes(bytes(values.itemsize * size))
        count = 0
        for group, bits in groups:
            for key in group:
                key = key or 1
                slot = key & mask
                while True:
                    found = keys[slot]
                    if not found:
                        keys[slot] = key
                        values[slot] = bits
                        count += 1
                        break
                    if found == key:
                        values[slot] |= bits
                        break
                    slot = (slot + 1) & mask
        self._keys = keys
        self._values = values
        self._mask = mask
        self._count = count

    def __len__(self) -> int:
        return self._count

    def get(self, key: int) -> int | None:
        keys = self._keys
        mask = self._mask
        key = key or 1
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                return self._values[slot]
            if not found:
                return None
            slot = (slot + 1) & mask


class DomainTable:
    """Every list's entries, exceptions and the allowlist in one table of bitmasks.

    Bit i marks an entry of list i, bit n+i an exception of list i (n lists), bit 2n the
    allowlist. One walk over a name's suffixes answers for any combination of lists.
    Keys are the names' hashes, not the names: a 64-bit int costs far less memory than a
    str, and the process-random str hash makes a collision both negligible and unforced.
    The lists' entries themselves are not kept.
    """

    def __init__(self, lists: Sequence[BlockList], allowlist: Iterable[str] = ()) -> None:
        self.lists = tuple(ListMeta(b.name, b.category, b.source) for b in lists)
        count = len(self.lists)
        self._count = count
        self._allow_bit = 1 << (2 * count)
        self._exception_bits = ((1 << count) - 1) << count
        # Groups of names with their bits, the names as the lists hold them: a DomainEntry
        # made for each of a million names would double the time it takes to build.
        groups: list[tuple[Sequence[str], int]] = [(tuple(allowlist), self._allow_bit)]
        overrides: dict[tuple[int, str], BlockMode] = {}
        for index, blocklist in enumerate(lists):
            groups.append((entry_names(blocklist.domains), 1 << index))
            groups.append((entry_names(blocklist.exceptions), 1 << (count + index)))
            for entry in entries_with_modes(blocklist.domains):
                assert entry.mode is not None
                overrides[(index, entry.domain)] = entry.mode
        depths: set[int] = set()
        for names, _ in groups:
            depths.update(map(str.count, names, repeat(".")))
        #: A query name is only looked up at suffixes as deep as some entry is.
        self._min_labels = min(depths, default=0) + 1
        self._max_labels = max(depths, default=-1) + 1
        capacity = sum(len(names) for names, _ in groups)
        self._table: dict[int, int] | PackedTable
        # The packed table holds 64-bit values: 32 lists or more (2n + 1 bits) stay in a dict.
        if capacity > PACKED_ABOVE and self._allow_bit.bit_length() <= 64:
            self._table = PackedTable([(map(hash, n), bits) for n, bits in groups], capacity)
        else:
            table: dict[int, int] = {}
            for names, bits in groups:
                keys = list(map(hash, names))
                merged = map(or_, map(table.get, keys, repeat(0)), repeat(bits))
                table.update(zip(keys, merged, strict=True))
            self._table = table
        self._overrides = overrides
        # The first list of a name: role_slots appends narrowed copies under the same name.
        self._index: dict[str, int] = {}
        for index, meta in enumerate(self.lists):
            self._index.setdefault(meta.name, index)
        # What makes an exception lift less than "every entry of its list": $important
        # entries and exceptions (hash -> (entry bits, exception bits), one bit per list),
        # and the lists where the most specific rule decides. Only a name that hits an
        # exception pays for them (_precise_blocks).
        important: dict[int, tuple[int, int]] = {}
        specific = 0
        for index, blocklist in enumerate(lists):
            bit = 1 << index
            for marked, kind in (
                (blocklist.important_domains, 0),
                (blocklist.important_exceptions, 1),
            ):
                for key in map(hash, marked):
                    pair = important.get(key, (0, 0))
                    important[key] = (
                        (pair[0] | bit, pair[1]) if kind == 0 else (pair[0], pair[1] | bit)
                    )
            if blocklist.specific_wins:
                specific |= bit
        self._important = important
        self._specific = specific
        self._precise = bool(important) or bool(specific)

    def __len__(self) -> int:
        return len(self._table)

    def mask(self, names: Iterable[str]) -> int:
        """The bits of the named lists (names must be loaded lists)."""
        mask = 0
        for name in names:
            mask |= 1 << self._index[name]
        return mask

    def _suffixes(self, qname: str) -> tuple[str, int]:
        """The deepest suffix worth a lookup, and how many suffixes to try from it."""
        labels = qname.count(".") + 1
        name = qname
        while labels > self._max_labels:
            name = name[name.find(".") + 1 :]
            labels -= 1
        return name, labels - self._min_labels + 1

    def match(self, qname: str, mask: int) -> tuple[int, str] | None:
        """(list index, matching entry) of the most specific block, or None if allowed."""
        get = self._table.get
        allow_bit = self._allow_bit
        exception_bits = self._exception_bits
        # Nearly every blocked name has one hit: it is kept in two locals, the rare deeper
        # hits (an entry under another entry) in a list made only for them.
        first: str | None = None
        first_bits = excepted = 0
        more: list[tuple[str, int]] | None = None
        if "\\" in qname:  # an escaped label: only the plain labels after it can match
            qname = plain_tail(qname)
            if not qname:
                return None
        # _suffixes inlined: this runs for every query.
        labels = qname.count(".") + 1
        name = qname
        while labels > self._max_labels:
            name = name[name.find(".") + 1 :]
            labels -= 1
        tries = labels - self._min_labels + 1
        while tries > 0:
            bits = get(hash(name))
            if bits is not None:
                if bits & allow_bit:
                    return None
                excepted |= bits & exception_bits
                if bits & mask:
                    if first is None:
                        first, first_bits = name, bits & mask
                    elif more is None:
                        more = [(name, bits & mask)]
                    else:
                        more.append((name, bits & mask))
            tries -= 1
            name = name[name.find(".") + 1 :]
        if first is None:
            return None
        if not excepted:
            return (first_bits & -first_bits).bit_length() - 1, first
        if self._precise:
            blocks = self._precise_blocks(qname, mask)
            return (blocks[0][1], blocks[0][2]) if blocks else None
        excepted >>= self._count
        for entry, bits in [(first, first_bits), *(more or ())]:
            bits &= ~excepted
            if bits:
                return (bits & -bits).bit_length() - 1, entry
        return None

    def blocking_bits(self, qname: str) -> int:
        """Every list that blocks qname (after exceptions); 0 when the allowlist covers it."""
        get = self._table.get
        blocked = excepted = 0
        if "\\" in qname:
            qname = plain_tail(qname)
            if not qname:
                return 0
        name, tries = self._suffixes(qname)
        while tries > 0:
            bits = get(hash(name))
            if bits is not None:
                if bits & self._allow_bit:
                    return 0
                blocked |= bits
                excepted |= bits & self._exception_bits
            tries -= 1
            name = name[name.find(".") + 1 :]
        if excepted and self._precise:
            found = 0
            for _, index, _ in self._precise_blocks(qname, (1 << self._count) - 1):
                found |= 1 << index
            return found
        return blocked & ~(excepted >> self._count) & ((1 << self._count) - 1)

    def _precise_blocks(self, qname: str, mask: int) -> list[tuple[int, int, str]]:
        """(depth, list index, entry) of each list in mask that blocks qname, deepest first.

        depth counts suffixes from qname (0 is qname itself). Within one list the rules
        rank, lowest first: entry, exception, $important entry, $important exception; the
        highest rank among the list's hits decides (adblock's order), the deepest hit of
        that rank naming the entry. A specific_wins list looks only at its deepest hit.
        """
        get = self._table.get
        hits: list[tuple[str, int]] = []
        name, tries = self._suffixes(qname)
        while tries > 0:
            bits = get(hash(name))
            if bits is not None:
                if bits & self._allow_bit:
                    return []
                hits.append((name, bits))
            tries -= 1
            name = name[name.find(".") + 1 :]
        count = self._count
        important = self._important
        blocks: list[tuple[int, int, str]] = []
        for index in range(count):
            bit = 1 << index
            if not mask & bit:
                continue
            exception_bit = bit << count
            rank, entry, depth = -1, "", 0
            for position, (name, bits) in enumerate(hits):
                if not bits & (bit | exception_bit):
                    continue
                important_entries, important_exceptions = important.get(hash(name), (0, 0))
                if bits & bit:
                    here = 2 if important_entries & bit else 0
                    if here > rank:
                        rank, entry, depth = here, name, position
                if bits & exception_bit:
                    rank = max(rank, 3 if important_exceptions & bit else 1)
                if self._specific & bit:
                    break
            if rank in (0, 2):
                blocks.append((depth, index, entry))
        blocks.sort()
        return blocks

    def __bool__(self) -> bool:
        return bool(self._table)

    @property
    def has_overrides(self) -> bool:
        """Whether any entry sets its own mode (else override() need not be asked)."""
        return bool(self._overrides)

    def override(self, index: int, entry: str) -> BlockMode | None:
        return self._overrides.get((index, entry))


class Policy:
    """Decides ALLOW, BLOCK or REFUSE for a client address and a query name."""

    def __init__(
        self,
        networks: NetworkMap,
        table: DomainTable,
        rules: dict[str, Rule],
        addresses: AddressTable | None = None,
    ) -> None:
        self.networks = networks
        self.table = table
        self.rules = rules
        self.addresses = addresses if addresses is not None else AddressTable(())
        #: Whether any rule inspects answers at all (else the miss path skips it).
        self.inspects = any(r.cname_mask or r.address_mask for r in rules.values())
        self._allow = {name: Verdict(Action.ALLOW, rule) for name, rule in rules.items()}
        self._allow_by_client: dict[str, Verdict] = {}
        #: Every network enforces the same lists: a name allowed for one is allowed for all.
        self.uniform = len({rule.mask for rule in rules.values()}) <= 1
        self._overrides = table.has_overrides

    def blocked_answer(self, rule: Rule, inspection: Inspection) -> Verdict | None:
        """The BLOCK verdict for an upstream answer this rule must not let through."""
        bits = (inspection.cname_bits & rule.cname_mask) | (
            inspection.address_bits & rule.address_mask
        )
        if not bits:
            return None
        index = (bits & -bits).bit_length() - 1
        meta = self.table.lists[index]
        trigger = inspection.triggers.get(index, "")
        return Verdict(Action.BLOCK, rule, meta.name, meta.category, trigger)

    def blocks_every_chain_into(self, name: str) -> bool:
        """Whether an answer with a CNAME to name is blocked for every network (by CNAME
        inspection), so that no one needs what a query for name would bring."""
        if not self.rules or not self.table:
            return False
        bits = self.table.blocking_bits(name)
        return bool(bits) and all(bits & rule.cname_mask for rule in self.rules.values())

    def inspect(self, wire: bytes, scan: ResponseScan) -> Inspection:
        """Which lists an answer's CNAME targets and addresses fall into, for any rule."""
        cname_bits = address_bits = 0
        triggers: dict[int, str] = {}
        for ref in scan.records:
            if ref.section != 1:
                continue
            if ref.rtype in (QType.CNAME, _DNAME) and self.table:
                try:
                    target = read_name(wire, ref.rdata_start)
                except FormatError:
                    continue
                bits = self.table.blocking_bits(target)
                cname_bits |= bits
                _note(triggers, bits, target)
            elif self.addresses and (
                (ref.rtype == QType.A and ref.end - ref.rdata_start == 4)
                or (ref.rtype == QType.AAAA and ref.end - ref.rdata_start == 16)
            ):
                packed = wire[ref.rdata_start : ref.end]
                bits = self.addresses.bits(packed)
                address_bits |= bits
                _note(triggers, bits, str(ipaddress.ip_address(packed)) if bits else "")
        return Inspection(cname_bits, address_bits, triggers)

    def decide(self, client_address: str, qname: str) -> Verdict:
        return self.judge(self.client_verdict(client_address), qname)

    def client_verdict(self, client_address: str) -> Verdict:
        """The ALLOW verdict of the client's network, or REFUSE outside every network."""
        allow = self._allow_by_client.get(client_address)
        return allow if allow is not None else self._client_verdict(client_address)

    def judge(self, allow: Verdict, qname: str) -> Verdict:
        """What client_verdict's verdict becomes for qname: BLOCK if a list of the
        network's policy has it, else allow itself (REFUSE stays REFUSE)."""
        rule = allow.rule
        if rule is None:
            return REFUSE
        if rule.mask:
            hit = self.table.match(qname, rule.mask)
            if hit is not None:
                index, entry = hit
                blocklist = self.table.lists[index]
                return _new_tuple(
                    Verdict,
                    (
                        _BLOCK,
                        rule,
                        blocklist.name,
                        blocklist.category,
                        entry,
                        self.table.override(index, entry) if self._overrides else None,
                    ),
                )
        return allow

    def _client_verdict(self, client_address: str) -> Verdict:
        """The ALLOW verdict of the client's network (REFUSE outside every network),
        remembered per address: the longest-prefix match is the expensive part."""
        network = self.networks.lookup(client_address)
        verdict = REFUSE if network is None else self._allow[network]
        memo = self._allow_by_client
        if len(memo) >= _CLIENT_MEMO_LIMIT:
            memo.clear()
        memo[client_address] = verdict
        return verdict


def build_policy(config: Config, lists: Sequence[BlockList]) -> Policy:
    """The Policy for a validated config and its loaded lists (in config order)."""
    slots, masks = role_slots(config.policies, lists)
    table = DomainTable(slots, config.allowlist)
    networks = NetworkMap((n.name, n.prefixes) for n in config.networks)
    addresses = AddressTable(slots)
    rules: dict[str, Rule] = {}
    for policy in config.policies:
        answers = _answers(policy)
        mask = masks[policy.name]
        cname_mask = mask if policy.cname_inspection else 0
        address_mask = mask & addresses.lists_mask if policy.response_ip_blocking else 0
        for network in policy.networks:
            rules[network] = Rule(
                network,
                policy.name,
                mask,
                answers,
                cname_mask,
                address_mask,
                policy.non_recursive == "cache",
            )
    return Policy(networks, table, rules, addresses)


def role_slots(
    policies: Sequence[PolicyConfig], lists: Sequence[BlockList]
) -> tuple[list[BlockList], dict[str, int]]:
    """The lists as the DomainTable holds them, and each policy's mask over them.

    Every list keeps its own bit. A policy that enforces only some roles of a list gets
    the bit of a copy holding just those entries (one copy per distinct choice, after the
    lists, named like the list): a name then blocks for one policy and not another with a
    single table walk, and lists nobody narrows cost nothing more.
    """
    slots = list(lists)
    index: dict[tuple[str, frozenset[Role] | None], int] = {
        (b.name, None): i for i, b in enumerate(lists)
    }
    by_name = {b.name: b for b in lists}
    masks: dict[str, int] = {}
    for policy in policies:
        mask = 0
        for name in policy.lists:
            blocklist = by_name[name]
            chosen = policy.roles_for(name)
            narrowed = select_roles(blocklist, chosen)
            key = (name, None) if narrowed is blocklist else (name, chosen)
            if key not in index:
                index[key] = len(slots)
                slots.append(narrowed)
            mask |= 1 << index[key]
        masks[policy.name] = mask
    return slots, masks


def _answers(policy: PolicyConfig) -> BlockAnswers:
    return BlockAnswers(policy.mode, policy.ttl, policy.sinkhole_ipv4, policy.sinkhole_ipv6)
