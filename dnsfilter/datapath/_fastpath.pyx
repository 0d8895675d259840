# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled UDP datapath: an accelerator of QueryHandler.handle and Resolver.answer_now.

It drains a UDP socket in batches (recvmmsg / sendmmsg) and answers, inside the batch, the
queries whose answer needs nothing but the state the Python path keeps: blocked names (the
policy's DomainTable, read in place) and fresh cache hits (the AnswerCache's entries, read in
place). Everything else, and every query the fast path is unsure of, goes to the Python
listener exactly as it arrived, so the Python code stays the reference: a query answered here
gets the bytes, counters, histogram and audit event the Python path would give it
(tests/unit/datapath/test_fastpath.py compares them on random lists, caches and packets).

Nothing is decided here before it is known to be answerable here: every check that could
send a query to the Python path comes before the first change of shared state (rate-limit
tokens, cache counters), so no query is counted twice.

Every read of packet bytes is bounds-checked against the datagram's length.
"""

from cpython cimport array
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.float cimport PyFloat_FromDouble
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EINTR, errno
from libc.stdlib cimport free as _c_free, malloc as _c_malloc
from libc.string cimport memcpy, memset

import logging
import time as _time

log = logging.getLogger("dnsfilter.datapath.fastpath")

#: ReplyKind values of what this loop answers, by KIND_CACHED and KIND_BLOCKED
KIND_NAMES = ("cached", "blocked")

cdef extern from "Python.h":
    # str's hash of an ASCII name is this of its bytes (CPython's SipHash, keyed per
    # process): so the DomainTable, keyed by hash(name), is probed without making the str.
    Py_ssize_t _Py_HashBytes(const void* data, Py_ssize_t length)
    object PyUnicode_DecodeASCII(const char* s, Py_ssize_t size, const char* errors)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* tp)
    int CLOCK_MONOTONIC
    int CLOCK_REALTIME

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void* iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    cdef struct sockaddr:
        sa_family_t sa_family
    cdef struct sockaddr_storage:
        sa_family_t ss_family
    cdef struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    cdef struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr* msgs, unsigned int vlen, int flags, timespec* timeout)
    int sendmmsg(int fd, mmsghdr* msgs, unsigned int vlen, int flags)
    int MSG_DONTWAIT
    int MSG_TRUNC
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    cdef struct in_addr:
        unsigned int s_addr
    cdef struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    cdef struct in6_addr:
        unsigned char s6_addr[16]
    cdef struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    unsigned short ntohs(unsigned short)
    unsigned short htons(unsigned short)
    unsigned int ntohl(unsigned int)

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)
    int inet_pton(int af, const char* src, void* dst)


cdef enum:
    BATCH = 32
    BUFFER = 65536  # a UDP payload cannot be larger
    HEADER_LEN = 12
    FLAG_QR = 0x8000
    FLAG_OPCODE = 0x7800
    FLAG_RD = 0x0100
    FLAG_RA = 0x0080
    FLAG_AD = 0x0020
    FLAG_CD = 0x0010
    TYPE_OPT = 41
    TYPE_A = 1
    TYPE_AAAA = 28
    TYPE_IXFR = 251
    TYPE_AXFR = 252
    CLASS_IN = 1
    CLASSIC_UDP_SIZE = 512
    MEMO_LIMIT = 65536

#: The counters of a batch, kept in C arrays and added to the Python dicts once per batch:
#: a dict of label tuples updated per datagram was most of a blocked answer's CPU.
cdef enum:
    KIND_CACHED = 0
    KIND_BLOCKED = 1
    MAX_NETWORKS = 64  # past this, a network's counters go to the dicts at once
    QLABELS = 32  # QTYPE_LABELS and OTHER
    MAX_LISTS = 64  # the table's masks are 64 bits, or the datagram is the Python path's
    MAX_BUCKETS = 64

#: What _answer decided for one datagram.
cdef enum:
    SLOW = 0  # the Python listener answers it: nothing of it is counted or changed yet
    SENT = 1  # the reply is in the datagram's output buffer
    DROPPED = 2  # nothing is sent (draining, or over the rate with action drop)

#: What the table says of a name for one rule.
cdef enum:
    ALLOWED = 0
    BLOCKED = 1
    UNSURE = 2  # exceptions, escapes, a mask past 64 bits: the Python policy decides


cdef struct Packet:
    int length
    unsigned int msg_id  # as on the wire, two octets
    unsigned int flags
    int question_end
    unsigned int qtype
    unsigned int qclass
    bint edns
    bint do_bit
    int max_size
    int name_len  # of name: the lowercased labels joined by dots, as Query.qname
    int labels  # qname.count(".") + 1, as DomainTable counts them
    char name[256]


cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline double wall_clock() noexcept nogil:
    """time.time(): the audit event's time."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline object item(object named, Py_ssize_t index):
    """named[index] for a NamedTuple (Layout, _Made): indexing a tuple subclass through the
    sequence protocol goes through a Python-level slot, 750 instructions a read."""
    return <object>PyTuple_GET_ITEM(named, index)


cdef inline int add_to(object counts, object key, long long n) except -1:
    """counts[key] += n on a dict or a Counter, whose __delitem__ sends item assignment
    through a slow Python-level slot; Counter does not change what assignment does."""
    cdef PyObject* found = PyDict_GetItem(counts, key)
    if found == NULL:
        PyDict_SetItem(counts, key, n)
    else:
        PyDict_SetItem(counts, key, <object>found + n)
    return 0


cdef inline unsigned int u16(const unsigned char* p) noexcept nogil:
    return (<unsigned int>p[0] << 8) | p[1]


cdef inline bint plain_byte(unsigned char b) noexcept nogil:
    """A byte Query.qname shows as it is (wire._MARK_SPECIAL leaves it alone)."""
    if b < 0x21 or b > 0x7E:
        return False
    # . " ( ) ; \ @ $ are escaped in presentation form
    return not (b == 0x2E or b == 0x22 or b == 0x28 or b == 0x29 or b == 0x3B
                or b == 0x5C or b == 0x40 or b == 0x24)


cdef bint parse(const unsigned char* data, int length, int udp_limit, Packet* p) noexcept nogil:
    """Fill p from a query the fast path can take; False sends it to parse_query.

    Taken: a standard query (QR 0, opcode 0), QDCOUNT 1, no answer or authority records, no
    additional record or exactly one OPT (root owner, version 0) that ends the datagram, and
    a question name of plain labels (no compression, no byte that needs an escape).
    Anything else may be an error parse_query reports in its own words: it goes there.
    """
    cdef int pos, end, i, label, ar
    cdef unsigned char c
    cdef unsigned int rdlen, ttl
    if length < HEADER_LEN:
        return False
    p.length = length
    p.msg_id = u16(data)
    p.flags = u16(data + 2)
    if p.flags & (FLAG_QR | FLAG_OPCODE):
        return False
    if u16(data + 4) != 1 or u16(data + 6) != 0 or u16(data + 8) != 0:
        return False
    ar = u16(data + 10)
    if ar > 1:
        return False
    pos = HEADER_LEN
    p.name_len = 0
    p.labels = 1
    while True:
        if pos >= length:
            return False
        label = data[pos]
        if label == 0:
            break
        if label > 63:
            return False
        end = pos + 1 + label
        if end >= length or end - HEADER_LEN >= 255:
            return False
        if p.name_len:
            p.name[p.name_len] = 46  # "."
            p.name_len += 1
            p.labels += 1
        for i in range(pos + 1, end):
            c = data[i]
            if not plain_byte(c):
                return False
            if 0x41 <= c <= 0x5A:
                c += 0x20
            p.name[p.name_len] = <char>c
            p.name_len += 1
        pos = end
    if pos + 5 > length:
        return False
    p.qtype = u16(data + pos + 1)
    p.qclass = u16(data + pos + 3)
    p.question_end = pos + 5
    p.edns = False
    p.do_bit = False
    p.max_size = CLASSIC_UDP_SIZE
    if ar:
        pos = p.question_end
        # The OPT: root owner, TYPE, CLASS (payload), TTL (ext rcode, version, flags), RDLEN.
        if pos + 11 > length or data[pos] != 0 or u16(data + pos + 1) != TYPE_OPT:
            return False
        rdlen = u16(data + pos + 9)
        if pos + 11 + <int>rdlen != length:
            return False
        if data[pos + 6] != 0:  # EDNS version: BADVERS is parse_query's to build
            return False
        p.edns = True
        p.do_bit = (data[pos + 7] & 0x80) != 0
        p.max_size = u16(data + pos + 3)
        if p.max_size > udp_limit:
            p.max_size = udp_limit
        if p.max_size < CLASSIC_UDP_SIZE:
            p.max_size = CLASSIC_UDP_SIZE
    return True


cdef class FastPath:
    """One UDP socket's compiled loop, in front of the Python listener that owns the rest.

    handler: the QueryHandler (its resolver, stats, audit and limits are read in place).
    listener: the Python UdpListener; listener.datagram_received(data, addr) gets every
    query this loop does not answer. fd: the socket, non-blocking.
    """

    cdef object handler
    cdef object listener
    cdef int fd
    cdef int udp_limit
    cdef object monotonic_clock
    # what the current policy and handler settings are, refreshed when they change
    cdef object policy
    cdef object limits
    cdef object cache
    cdef object clock
    cdef bint own_clock
    cdef object packed_keys_obj
    cdef object packed_values_obj
    cdef long long* packed_keys
    cdef const void* packed_values
    cdef int value_size
    cdef unsigned long long packed_mask
    cdef object dict_table
    cdef bint table_usable
    cdef int min_labels
    cdef int max_labels
    cdef unsigned long long allow_bit
    cdef unsigned long long exception_bits
    cdef object table_lists
    cdef bint overrides
    cdef object clients  # packed address -> (host, allow verdict, rule, limit key, network,
                         # mask, network's index in network_names or -1, the rule's shapes)
    cdef list network_names
    cdef dict network_ids
    cdef tuple list_names
    cdef tuple list_categories
    cdef dict shapes  # id of a rule's BlockAnswers -> its shapes, by shape_index()
    cdef object opt_plain
    cdef object opt_do
    cdef object refuse
    cdef object qtype_labels
    cdef object other_qtype
    cdef double buckets[MAX_BUCKETS]
    cdef int bucket_count
    cdef unsigned char qlabel_of[256]  # qtype -> index in qlabel_names
    cdef tuple qlabel_names
    cdef int other_qlabel
    cdef long long blocked_client_limit
    # What the handler, its stats and audit log hold, read once per batch (refresh()).
    cdef bint draining
    cdef bint rate_limited
    cdef bint prefetching
    cdef double stale_max_age
    cdef object queries
    cdef object blocked
    cdef object blocked_clients
    cdef object audit
    cdef object audit_buffer  # an AuditLog's, whose record() is inlined
    cdef object audit_append
    cdef Py_ssize_t audit_early
    cdef bint log_allowed
    # This batch's counters (settle() adds them to the Python side's).
    cdef long long query_tally[MAX_NETWORKS * QLABELS * 2]
    cdef int query_cells[BATCH]
    cdef int query_cell_count
    cdef long long blocked_tally[MAX_NETWORKS * MAX_LISTS]
    cdef int blocked_cells[BATCH]
    cdef int blocked_cell_count
    cdef long long bucket_tally[2][MAX_BUCKETS + 1]
    cdef double duration_tally[2]
    cdef bint timed[2]
    cdef long long hit_tally
    cdef object new_tuple
    cdef object audit_event
    cdef object audit_log
    cdef object lifetime_per_window
    # the batch
    cdef mmsghdr recv_msgs[BATCH]
    cdef iovec recv_iov[BATCH]
    cdef sockaddr_storage names[BATCH]
    cdef mmsghdr send_msgs[BATCH]
    cdef iovec send_iov[BATCH]
    cdef unsigned char* in_buf
    cdef unsigned char* out_buf
    cdef int out_len[BATCH]
    cdef Packet packet
    # what probe() and blocked_shape() found (Cython has no pointers to objects)
    cdef object found_entry
    cdef object found_mode
    #: queries answered here, by outcome: for tests and the start-up log's proof of life
    cdef public unsigned long long answered
    cdef public unsigned long long handed_over

    def __cinit__(self):
        self.in_buf = NULL
        self.out_buf = NULL

    def __init__(self, handler, listener, int fd, *, constants):
        self.handler = handler
        self.listener = listener
        self.fd = fd
        self.udp_limit = handler.udp_limit
        self.monotonic_clock = _time.monotonic
        self.clients = {}
        self.shapes = {}
        self.opt_plain = constants["opt_plain"]
        self.opt_do = constants["opt_do"]
        self.refuse = constants["refuse"]
        self.qtype_labels = constants["qtype_labels"]
        self.other_qtype = constants["other_qtype"]
        self.new_tuple = tuple.__new__
        self.audit_event = constants["audit_event"]
        self.audit_log = constants["audit_log"]
        self.lifetime_per_window = constants["lifetime_per_window"]
        buckets = constants["buckets"]
        if len(buckets) > MAX_BUCKETS:
            raise ValueError(f"more than {MAX_BUCKETS} duration buckets")
        self.bucket_count = len(buckets)
        for i, bound in enumerate(buckets):
            self.buckets[i] = bound
        labels = constants["qtype_labels"]
        if len(labels) >= QLABELS or any(not 0 <= qtype < 256 for qtype in labels):
            raise ValueError("QTYPE_LABELS holds too many labels or a qtype past 255")
        self.qlabel_names = (*labels.values(), constants["other_qtype"])
        self.other_qlabel = len(labels)
        memset(self.qlabel_of, self.other_qlabel, sizeof(self.qlabel_of))
        for i, qtype in enumerate(labels):
            self.qlabel_of[qtype] = i
        self.blocked_client_limit = constants["blocked_client_limit"]
        self.network_names = []
        self.network_ids = {}
        memset(self.query_tally, 0, sizeof(self.query_tally))
        memset(self.blocked_tally, 0, sizeof(self.blocked_tally))
        memset(self.bucket_tally, 0, sizeof(self.bucket_tally))
        self.query_cell_count = self.blocked_cell_count = 0
        self.duration_tally[0] = self.duration_tally[1] = 0.0
        self.timed[0] = self.timed[1] = False
        self.hit_tally = 0
        self.in_buf = <unsigned char*>_alloc(BATCH * BUFFER)
        self.out_buf = <unsigned char*>_alloc(BATCH * BUFFER)
        cdef int j
        for j in range(BATCH):
            self.recv_iov[j].iov_base = self.in_buf + j * BUFFER
            self.recv_iov[j].iov_len = BUFFER
            memset(&self.recv_msgs[j], 0, sizeof(mmsghdr))
            self.recv_msgs[j].msg_hdr.msg_iov = &self.recv_iov[j]
            self.recv_msgs[j].msg_hdr.msg_iovlen = 1
        self.policy = None
        self.answered = 0
        self.handed_over = 0

    def __dealloc__(self):
        _free(self.in_buf)
        _free(self.out_buf)

    # -- state the Python side owns -------------------------------------------------------

    cdef int refresh(self) except -1:
        """Pick up a swapped policy, cache or limits: a reload is seen by the next batch;
        and read what the handler, its stats and audit log hold now."""
        handler = self.handler
        resolver = handler.resolver
        self.draining = handler.draining
        self.rate_limited = handler.rate_limited
        self.prefetching = bool(resolver.prefetch_min_hits)
        if resolver.cache is not None:
            self.stale_max_age = resolver.cache.stale_max_age
        stats = handler.stats
        self.queries = stats.queries
        self.blocked = stats.blocked
        self.blocked_clients = stats.blocked_clients
        audit = self.audit = handler.audit
        self.audit_buffer = None
        self.log_allowed = audit is not None and audit.log_allowed
        if type(audit) is self.audit_log:
            # AuditLog.record() inlined while the buffer is under half full: past that, it
            # wakes the flusher and counts what a full buffer pushes out.
            self.audit_buffer = audit._buffer
            self.audit_append = self.audit_buffer.append
            self.audit_early = audit._early
        policy = resolver.policy
        if (policy is self.policy and handler.limits is self.limits
                and resolver.cache is self.cache and resolver.clock is self.clock):
            return 0
        self.policy = policy
        self.limits = handler.limits
        self.cache = resolver.cache
        self.clock = resolver.clock
        self.own_clock = self.clock is self.monotonic_clock
        self.clients = {}
        self.shapes = {}
        table = policy.table
        self.table_lists = table.lists
        self.list_names = tuple(meta.name for meta in table.lists)
        self.list_categories = tuple(meta.category._value_ for meta in table.lists)
        self.overrides = bool(policy._overrides)
        self.min_labels = table._min_labels
        self.max_labels = table._max_labels
        allow_bit = table._allow_bit
        # Masks past 64 bits (32 lists or more) and precise exceptions stay in Python.
        self.table_usable = allow_bit < (1 << 63)
        if self.table_usable:
            self.allow_bit = allow_bit
            self.exception_bits = table._exception_bits
        inner = table._table
        self.packed_keys_obj = None
        self.packed_values_obj = None
        self.dict_table = None
        if type(inner) is dict:
            self.dict_table = inner
        else:
            self._use_packed(inner)
        return 0

    cdef int _use_packed(self, inner) except -1:
        cdef array.array keys = inner._keys
        cdef array.array values = inner._values
        if keys.ob_descr.itemsize != 8:
            raise TypeError("PackedTable keys are not 64-bit")
        self.packed_keys_obj = keys
        self.packed_values_obj = values
        self.packed_keys = keys.data.as_longlongs
        self.packed_values = <const void*>values.data.as_chars
        self.value_size = values.ob_descr.itemsize
        self.packed_mask = inner._mask
        return 0

    cdef object client(self, sockaddr_storage* name):
        """(host, allow verdict, rule, limit key, network, rule mask) of the sender; None
        for an address the Python path must see (an IPv6 scope)."""
        cdef char text[64]
        cdef bytes packed
        cdef sockaddr_in* v4
        cdef sockaddr_in6* v6
        if name.ss_family == AF_INET:
            v4 = <sockaddr_in*>name
            packed = PyBytes_FromStringAndSize(<char*>&v4.sin_addr, 4)
        elif name.ss_family == AF_INET6:
            v6 = <sockaddr_in6*>name
            if v6.sin6_scope_id:
                return None
            packed = PyBytes_FromStringAndSize(<char*>&v6.sin6_addr, 16)
        else:
            return None
        found = self.clients.get(packed)
        if found is not None:
            return found
        if name.ss_family == AF_INET:
            inet_ntop(AF_INET, &v4.sin_addr, text, 64)
        else:
            inet_ntop(AF_INET6, &v6.sin6_addr, text, 64)
        host = text.decode("ascii")
        allow = self.policy.client_verdict(host)
        rule = allow[1]
        key = None
        if self.limits is not None:
            key = self.limits.key(host)
        mask = 0
        if rule is not None:
            mask = rule.mask
        network = rule.network if rule is not None else None
        network_id = -1
        if network is not None:
            network_id = self.network_ids.get(network, -1)
            if network_id < 0 and len(self.network_names) < MAX_NETWORKS:
                network_id = self.network_ids[network] = len(self.network_names)
                self.network_names.append(network)
        shapes = None
        if rule is not None:
            shapes = self.shapes.get(id(rule.answers))
            if shapes is None:
                shapes = self.shapes[id(rule.answers)] = [None] * (MAX_LISTS * 3 * 4)
        found = (host, allow, rule, key, network, mask, network_id, shapes)
        if len(self.clients) >= MEMO_LIMIT:
            self.clients.clear()
        self.clients[packed] = found
        return found

    # -- the table -------------------------------------------------------------------------

    cdef int judge(self, Packet* p, object rule_mask, int* index, int* entry_off) except -1:
        """DomainTable.match for a plain name: ALLOWED, BLOCKED (index, entry offset) or UNSURE."""
        cdef unsigned long long mask, bits, first_bits = 0, excepted = 0
        cdef int labels = p.labels, off = 0, tries, first_off = -1, found
        if not self.table_usable or rule_mask >= (1 << 64):
            return UNSURE
        mask = rule_mask
        while labels > self.max_labels:
            off = _next_label(p, off)
            labels -= 1
        tries = labels - self.min_labels + 1
        while tries > 0:
            found = self.lookup(p.name + off, p.name_len - off, &bits)
            if found < 0:
                return UNSURE
            if found:
                if bits & self.allow_bit:
                    return ALLOWED
                excepted |= bits & self.exception_bits
                if bits & mask and first_off < 0:
                    first_off = off
                    first_bits = bits & mask
            tries -= 1
            off = _next_label(p, off)
        if first_off < 0:
            return ALLOWED
        if excepted:
            return UNSURE
        index[0] = _lowest_bit(first_bits)
        entry_off[0] = first_off
        return BLOCKED

    cdef int lookup(self, const char* name, int length, unsigned long long* bits) except -2:
        """1 and the bits of hash(name) in the table, 0 if absent, -1 if not representable."""
        cdef long long key = _Py_HashBytes(name, length)
        cdef unsigned long long slot
        cdef long long found
        if self.dict_table is not None:
            value = self.dict_table.get(key)
            if value is None:
                return 0
            if value >= (1 << 64):
                return -1
            bits[0] = value
            return 1
        if key == 0:
            key = 1
        slot = (<unsigned long long>key) & self.packed_mask
        while True:
            found = self.packed_keys[slot]
            if found == key:
                if self.value_size == 1:
                    bits[0] = (<const unsigned char*>self.packed_values)[slot]
                elif self.value_size == 2:
                    bits[0] = (<const unsigned short*>self.packed_values)[slot]
                elif self.value_size == 4:
                    bits[0] = (<const unsigned int*>self.packed_values)[slot]
                else:
                    bits[0] = (<const unsigned long long*>self.packed_values)[slot]
                return 1
            if found == 0:
                return 0
            slot = (slot + 1) & self.packed_mask

    # -- one datagram ------------------------------------------------------------------------

    cdef int answer(self, const unsigned char* data, int length, sockaddr_storage* name,
                    unsigned char* out, int* out_len) except -1:
        """Decide one datagram: SENT (reply in out), DROPPED or SLOW."""
        cdef double started = monotonic()
        cdef Packet* p = &self.packet
        cdef int verdict, index = 0, entry_off = 0, n
        cdef bint probed
        handler = self.handler
        if self.draining:
            return DROPPED
        if not parse(data, length, self.udp_limit, p):
            return SLOW
        slot = self.client(name)
        if slot is None:
            return SLOW
        rule = slot[2]
        if rule is None:  # outside every network: REFUSED is built in Python
            return SLOW
        if not (p.flags & FLAG_RD) or TYPE_IXFR <= p.qtype <= TYPE_AXFR:
            return SLOW
        cache = self.cache
        qname = None
        entry = None
        made = None
        mode = None
        now = 0.0
        # The chain of Resolver.answer_now: the cache first when every network has the same
        # lists, then the lists, then (lists per network) the cache.
        probed = cache is not None and self.policy.uniform
        if probed:
            qname = PyUnicode_DecodeASCII(p.name, p.name_len, NULL)
            now = started if self.own_clock else self.clock()
            if self.probe(cache, p, qname, now) == SLOW:
                return SLOW
            entry = self.found_entry
        if entry is None:
            verdict = ALLOWED
            if slot[5]:
                verdict = self.judge(p, slot[5], &index, &entry_off)
            if verdict == UNSURE:
                return SLOW
            if verdict == BLOCKED:
                made = self.blocked_shape(p, slot, index, entry_off)
                if made is None:
                    return SLOW
                mode = self.found_mode
            elif cache is None or probed:
                return SLOW  # a miss: forwarded by the Python path
            else:
                qname = PyUnicode_DecodeASCII(p.name, p.name_len, NULL)
                now = started if self.own_clock else self.clock()
                if self.probe(cache, p, qname, now) == SLOW or self.found_entry is None:
                    return SLOW
                entry = self.found_entry
        # Answerable here. Only from now on does shared state change, as in the Python path:
        # the rate limit first (QueryHandler.handle), then the cache, counters and audit.
        key = slot[3]
        if key is not None and self.rate_limited and not self.limits.allow(key, started):
            reply = handler.over_rate_datagram(
                PyBytes_FromStringAndSize(<const char*>data, length), slot[0], started)
            if reply is None:
                return DROPPED
            return self.copy_out(reply, out, out_len)
        if entry is not None:
            return self.send_cached(p, data, slot, cache, entry, started, qname, out, out_len)
        return self.send_blocked(p, data, slot, rule, index, made, mode, started, qname,
                                 out, out_len)

    cdef object blocked_shape(self, Packet* p, slot, int index, int entry_off):
        """BlockAnswers' reply shape (rcode, counts, tail) for this query; None when the
        reply would not fit the client's size (truncation is the Python path's). The
        entry's own mode, if it has one, is left in found_mode."""
        cdef int qt3 = p.qtype if p.qtype == TYPE_A or p.qtype == TYPE_AAAA else 0
        cdef int at
        cdef list shapes
        mode = None
        if self.overrides:
            entry_name = PyUnicode_DecodeASCII(p.name + entry_off, p.name_len - entry_off, NULL)
            mode = self.policy.table.override(index, entry_name)
        answers = slot[2].answers
        if mode is None:
            shapes = slot[7]
            # index < MAX_LISTS: a table with more lists is not read here (refresh())
            at = ((index * 3 + (0 if qt3 == 0 else 1 if qt3 == TYPE_A else 2)) * 2
                  + p.edns) * 2 + p.do_bit
            made = shapes[at]
            if made is None:
                made = shapes[at] = answers.shape(qt3, self.list_names[index], None, p.edns,
                                                  p.do_bit)
        else:
            made = answers.shape(qt3, self.list_names[index], mode, p.edns, p.do_bit)
        if p.question_end + PyBytes_GET_SIZE(item(made, 2)) > p.max_size:
            return None
        self.found_mode = mode
        return made

    cdef int probe(self, cache, Packet* p, qname, double now) except -1:
        """AnswerCache.get and Resolver._cached without their side effects: SENT with a fresh
        entry this loop can serve in found_entry, SENT with None there (a miss), or SLOW."""
        cdef double stored_at, expires_at
        self.found_entry = None
        entries = cache._entries
        if p.qclass == CLASS_IN and not (p.do_bit or p.flags & FLAG_CD):
            key = qname if p.qtype == TYPE_A else (qname, p.qtype)
        else:
            key = (qname, p.qtype, p.qclass, p.do_bit, bool(p.flags & FLAG_CD))
        entry = entries.get(key)
        if entry is None:
            return SENT
        stored_at = entry.stored_at
        expires_at = stored_at + (entry.prefetch_at - stored_at) * self.lifetime_per_window
        if now >= expires_at:
            if now >= expires_at + self.stale_max_age:
                return SLOW  # cache.get deletes it: left to the Python path
            return SENT
        state = entry._hit
        if state is None or not (state.rendered_from <= now < state.rendered_until):
            return SLOW  # the first hit of each second renders the TTLs, in Python
        if now >= entry.prefetch_at and self.prefetching:
            return SLOW  # a late hit may start a prefetch
        if entry.inspection is not None:
            return SLOW  # the client's rule may block what the answer holds
        body = state.rendered
        if type(body) is not bytes:
            return SLOW  # read in place below as bytes; an entry built from a bytearray is not
        if (p.question_end + PyBytes_GET_SIZE(body) + (11 if p.edns else 0)) > p.max_size:
            return SLOW  # truncated by the Python path
        self.found_entry = entry
        return SENT

    cdef int send_cached(self, Packet* p, const unsigned char* data, slot, cache, entry,
                         double started, qname, unsigned char* out, int* out_len) except -1:
        cdef unsigned int flags
        cdef int pos
        state = entry._hit
        state.used = True
        self.hit_tally += 1  # cache.hits, at the end of the batch
        layout = entry.layout
        body = state.rendered
        flags = <unsigned int>item(layout, 0) | (p.flags & (FLAG_RD | FLAG_CD))
        if flags & FLAG_AD and not (p.do_bit or p.flags & FLAG_AD):
            flags &= ~FLAG_AD
        pos = _header(out, p.msg_id, flags, item(layout, 1), item(layout, 2),
                      <int>item(layout, 3) + (1 if p.edns else 0))
        memcpy(out + pos, data + HEADER_LEN, p.question_end - HEADER_LEN)
        pos += p.question_end - HEADER_LEN
        memcpy(out + pos, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
        pos += PyBytes_GET_SIZE(body)
        if p.edns:
            opt = self.opt_do if p.do_bit else self.opt_plain
            memcpy(out + pos, PyBytes_AS_STRING(opt), PyBytes_GET_SIZE(opt))
            pos += PyBytes_GET_SIZE(opt)
        out_len[0] = pos
        self.count(p, slot, KIND_CACHED, started, qname, -1, None)
        return SENT

    cdef int send_blocked(self, Packet* p, const unsigned char* data, slot, rule, int index,
                          made, mode, double started, qname, unsigned char* out,
                          int* out_len) except -1:
        cdef int pos, question = p.question_end - HEADER_LEN
        cdef unsigned int rcode = item(made, 0), flags
        counts = item(made, 1)
        tail = item(made, 2)
        out[0] = (p.msg_id >> 8) & 0xFF
        out[1] = p.msg_id & 0xFF
        flags = FLAG_QR | FLAG_RA | (p.flags & (FLAG_RD | FLAG_CD)) | (rcode & 0xF)
        out[2] = (flags >> 8) & 0xFF
        out[3] = flags & 0xFF
        memcpy(out + 4, PyBytes_AS_STRING(counts), 8)
        pos = HEADER_LEN
        memcpy(out + pos, data + HEADER_LEN, question)
        pos += question
        memcpy(out + pos, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail))
        pos += PyBytes_GET_SIZE(tail)
        out_len[0] = pos
        action = (mode or rule.answers.mode)._value_
        self.count(p, slot, KIND_BLOCKED, started, qname, index, action)
        return SENT

    cdef int count(self, Packet* p, slot, int kind, double started, qname, int index,
                   str action) except -1:
        """QueryHandler._count and _audit for a reply sent from here: the counters into this
        batch's tallies, the blocked client and the audit event at once (their order is seen)."""
        cdef double elapsed
        cdef int lo, hi, mid, network_id = slot[6], label, cell
        network = slot[4]
        label = self.qlabel_of[p.qtype] if p.qtype < 256 else self.other_qlabel
        if network_id < 0:
            add_to(self.queries, (network, "udp", self.qlabel_names[label], KIND_NAMES[kind]), 1)
        else:
            cell = (network_id * QLABELS + label) * 2 + kind
            if self.query_tally[cell] == 0:
                self.query_cells[self.query_cell_count] = cell
                self.query_cell_count += 1
            self.query_tally[cell] += 1
        list_name = ""
        category = ""
        if kind == KIND_BLOCKED:
            list_name = self.list_names[index]
            category = self.list_categories[index]
            if network_id < 0:
                add_to(self.blocked, (network, list_name, category), 1)
            else:
                cell = network_id * MAX_LISTS + index
                if self.blocked_tally[cell] == 0:
                    self.blocked_cells[self.blocked_cell_count] = cell
                    self.blocked_cell_count += 1
                self.blocked_tally[cell] += 1
            self.blocked_client(network, list_name, slot[0], started)
        if self.audit is not None and (kind == KIND_BLOCKED or self.log_allowed):
            if qname is None:
                qname = PyUnicode_DecodeASCII(p.name, p.name_len, NULL)
            event = self.new_tuple(self.audit_event, (
                PyFloat_FromDouble(wall_clock()), slot[0], network, qname, p.qtype,
                KIND_NAMES[kind], list_name, category, action if action is not None else "",
                ""))
            if self.audit_buffer is not None and len(self.audit_buffer) < self.audit_early:
                self.audit_append(event)
            else:
                self.audit.record(event)
        elapsed = monotonic() - started
        lo = 0
        hi = self.bucket_count
        while lo < hi:  # bisect_left
            mid = (lo + hi) // 2
            if self.buckets[mid] < elapsed:
                lo = mid + 1
            else:
                hi = mid
        self.bucket_tally[kind][lo] += 1
        self.duration_tally[kind] += elapsed
        self.timed[kind] = True
        self.answered += 1
        return 0

    cdef int blocked_client(self, network, list_name, client, double now) except -1:
        """QueryStats.blocked_client, in place while the client's dict has room."""
        cdef PyObject* found = PyDict_GetItem(self.blocked_clients, (network, list_name))
        if found != NULL:
            seen = <object>found
            if len(seen) < self.blocked_client_limit or client in seen:
                PyDict_SetItem(seen, client, PyFloat_FromDouble(now))
                return 0
        self.handler.stats.blocked_client(network, list_name, client, now)
        return 0

    cdef int settle(self) except -1:
        """Add this batch's tallies to the Python side's counters: the metrics and tests read
        them between batches, never during one."""
        cdef int t, cell, kind, bucket, network_id, rest
        cdef long long n
        for t in range(self.query_cell_count):
            cell = self.query_cells[t]
            n = self.query_tally[cell]
            self.query_tally[cell] = 0
            kind = cell % 2
            rest = cell // 2
            network_id = rest // QLABELS
            add_to(self.queries, (self.network_names[network_id], "udp",
                                  self.qlabel_names[rest % QLABELS], KIND_NAMES[kind]), n)
        self.query_cell_count = 0
        for t in range(self.blocked_cell_count):
            cell = self.blocked_cells[t]
            n = self.blocked_tally[cell]
            self.blocked_tally[cell] = 0
            index = cell % MAX_LISTS
            add_to(self.blocked, (self.network_names[cell // MAX_LISTS], self.list_names[index],
                                  self.list_categories[index]), n)
        self.blocked_cell_count = 0
        if self.hit_tally:
            self.cache.hits += self.hit_tally
            self.hit_tally = 0
        stats = self.handler.stats
        for kind in range(2):
            if not self.timed[kind]:
                continue
            name = KIND_NAMES[kind]
            histogram = stats.durations.get(name) or stats.duration(name)
            counts = histogram.counts
            for bucket in range(self.bucket_count + 1):
                n = self.bucket_tally[kind][bucket]
                if n:
                    counts[bucket] += n
                    self.bucket_tally[kind][bucket] = 0
            histogram.sum += self.duration_tally[kind]
            self.duration_tally[kind] = 0.0
            self.timed[kind] = False
        return 0

    cdef int copy_out(self, bytes reply, unsigned char* out, int* out_len) except -1:
        cdef Py_ssize_t size = PyBytes_GET_SIZE(reply)
        if size > BUFFER:
            size = BUFFER
        memcpy(out, PyBytes_AS_STRING(reply), size)
        out_len[0] = <int>size
        return SENT

    # -- the loop ----------------------------------------------------------------------------

    def drain(self):
        """Read every datagram waiting (the event loop calls this when the socket is readable)."""
        cdef int received, i, sends
        while True:
            for i in range(BATCH):  # value-result: the kernel writes each sender's length
                self.recv_msgs[i].msg_hdr.msg_name = &self.names[i]
                self.recv_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                self.recv_msgs[i].msg_hdr.msg_flags = 0
            received = recvmmsg(self.fd, self.recv_msgs, BATCH, MSG_DONTWAIT, NULL)
            if received < 0:
                if errno == EINTR:
                    PyErr_CheckSignals()
                    continue
                return  # EAGAIN: drained; anything else is uvloop's and the next read's
            self.refresh()
            sends = 0
            try:
                self.answer_batch(received, &sends)
            finally:
                self.settle()
            if sends:
                self._flush(sends)
            if received < BATCH:
                return

    cdef int answer_batch(self, int received, int* sent) except -1:
        """Answer or hand over each datagram of the batch; sent: how many replies are queued."""
        cdef int i, outcome, length
        for i in range(received):
            length = self.recv_msgs[i].msg_len
            if self.recv_msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
                length = BUFFER
            try:
                outcome = self.answer(self.in_buf + i * BUFFER, length, &self.names[i],
                                      self.out_buf + i * BUFFER, &self.out_len[i])
            except Exception:
                log.exception("compiled datapath: handing a query to the Python path")
                outcome = SLOW
            if outcome == SENT:
                self._queue(sent[0], i)
                sent[0] += 1
            elif outcome == SLOW:
                self.handed_over += 1
                self._hand_over(i, length)
        return 0

    cdef void _queue(self, int slot, int i) noexcept:
        self.send_iov[slot].iov_base = self.out_buf + i * BUFFER
        self.send_iov[slot].iov_len = self.out_len[i]
        memset(&self.send_msgs[slot], 0, sizeof(mmsghdr))
        self.send_msgs[slot].msg_hdr.msg_name = &self.names[i]
        self.send_msgs[slot].msg_hdr.msg_namelen = self.recv_msgs[i].msg_hdr.msg_namelen
        self.send_msgs[slot].msg_hdr.msg_iov = &self.send_iov[slot]
        self.send_msgs[slot].msg_hdr.msg_iovlen = 1

    cdef void _flush(self, int count) noexcept:
        cdef int done = 0, sent
        while done < count:
            sent = sendmmsg(self.fd, self.send_msgs + done, count - done, MSG_DONTWAIT)
            if sent < 0:
                if errno == EINTR:
                    continue
                # A full send buffer or a peer that went away: UDP drops, as uvloop does.
                done += 1
                continue
            done += sent

    cdef int _hand_over(self, int i, int length) except -1:
        data = PyBytes_FromStringAndSize(<const char*>(self.in_buf + i * BUFFER), length)
        addr = _address(&self.names[i])
        try:
            self.listener.datagram_received(data, addr)
        except Exception:
            log.exception("error handling a UDP query")
        return 0

    # -- for the differential test -------------------------------------------------------------

    def answer_datagram(self, bytes data, tuple addr):
        """(outcome, reply) for one datagram from addr, as drain() decides it, without
        sockets and without running the Python path: "sent" with the reply bytes,
        "dropped", or "slow" (for the Python listener, untouched)."""
        cdef sockaddr_storage name
        cdef int out_len = 0, outcome
        cdef bytes host = addr[0].encode("ascii")
        memset(&name, 0, sizeof(name))
        if b":" in host:
            (<sockaddr_in6*>&name).sin6_family = AF_INET6
            (<sockaddr_in6*>&name).sin6_port = htons(addr[1])
            if inet_pton(AF_INET6, host, &(<sockaddr_in6*>&name).sin6_addr) != 1:
                raise ValueError(addr[0])
        else:
            (<sockaddr_in*>&name).sin_family = AF_INET
            (<sockaddr_in*>&name).sin_port = htons(addr[1])
            if inet_pton(AF_INET, host, &(<sockaddr_in*>&name).sin_addr) != 1:
                raise ValueError(addr[0])
        self.refresh()
        if len(data) > BUFFER:
            return "slow", None
        memcpy(self.in_buf, PyBytes_AS_STRING(data), len(data))
        try:
            outcome = self.answer(self.in_buf, len(data), &name, self.out_buf, &out_len)
        finally:
            self.settle()
        if outcome == SENT:
            return "sent", PyBytes_FromStringAndSize(<const char*>self.out_buf, out_len)
        return ("slow", "sent", "dropped")[outcome], None


cdef inline int _next_label(Packet* p, int off) noexcept nogil:
    """Offset of the next label: name.find(".") + 1, which stays put on the last label."""
    cdef int i
    for i in range(off, p.name_len):
        if p.name[i] == 46:
            return i + 1
    return off


cdef inline int _lowest_bit(unsigned long long bits) noexcept nogil:
    cdef int index = 0
    while not (bits & 1):
        bits >>= 1
        index += 1
    return index


cdef inline int _header(unsigned char* out, unsigned int msg_id, unsigned int flags,
                        unsigned int an, unsigned int ns, unsigned int ar) noexcept nogil:
    out[0] = (msg_id >> 8) & 0xFF
    out[1] = msg_id & 0xFF
    out[2] = (flags >> 8) & 0xFF
    out[3] = flags & 0xFF
    out[4] = 0
    out[5] = 1
    out[6] = (an >> 8) & 0xFF
    out[7] = an & 0xFF
    out[8] = (ns >> 8) & 0xFF
    out[9] = ns & 0xFF
    out[10] = (ar >> 8) & 0xFF
    out[11] = ar & 0xFF
    return HEADER_LEN


cdef object _address(sockaddr_storage* name):
    """The address tuple the socket module would give: (host, port) or the IPv6 4-tuple."""
    cdef char text[64]
    cdef sockaddr_in* v4
    cdef sockaddr_in6* v6
    if name.ss_family == AF_INET:
        v4 = <sockaddr_in*>name
        inet_ntop(AF_INET, &v4.sin_addr, text, 64)
        return (text.decode("ascii"), ntohs(v4.sin_port))
    v6 = <sockaddr_in6*>name
    inet_ntop(AF_INET6, &v6.sin6_addr, text, 64)
    host = text.decode("ascii")
    if v6.sin6_scope_id:
        import socket
        host = socket.getnameinfo(
            (host, 0, 0, v6.sin6_scope_id), socket.NI_NUMERICHOST)[0]
    return (host, ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo), v6.sin6_scope_id)


cdef void* _alloc(size_t size) except NULL:
    cdef void* block = _c_malloc(size)
    if block == NULL:
        raise MemoryError()
    return block

cdef void _free(void* block) noexcept:
    if block != NULL:
        _c_free(block)


def hash_matches_str() -> bool:
    """Whether hash(str) of an ASCII name is _Py_HashBytes of its bytes in this interpreter:
    the fast path reads the DomainTable only if it is."""
    cdef bytes sample
    for text in ("example.com", "a", "", "x" * 200, "wechat.com"):
        sample = text.encode("ascii")
        if _Py_HashBytes(PyBytes_AS_STRING(sample), len(sample)) != hash(text):
            return False
    return True
