# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The ceiling-mmsg row's loop: the kernel's UDP floor, in C.

Drains a bound, blocking UDP socket with recvmmsg (MSG_WAITFORONE: block for the first
datagram, then take what is queued, up to BATCH), sets the QR bit of each datagram of 12 bytes
or more and sends the batch back with sendmmsg. No parsing; the GIL is released except to run
Python's signal handlers. Built by bench/servers.py into the run's temp dir with cythonize, and
run by bench/echo_mmsg.py; not part of the dnsfilter package.

A signal interrupts recvmmsg with EINTR; the loop then takes the GIL and calls
PyErr_CheckSignals(), so the handler's exception (SIGTERM -> bench/echo_mmsg.py's handler,
SIGINT -> KeyboardInterrupt) leaves serve(). A signal that lands outside recvmmsg interrupts
nothing, so the loop also checks after an EINTR from sendmmsg, every CHECK_EVERY batches
(under load) and when the socket's SO_RCVTIMEO expires (EAGAIN, when idle).
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport calloc, free
from libc.string cimport strerror
from posix.uio cimport iovec


cdef extern from "<sys/socket.h>" nogil:
    # pyconfig.h defines _GNU_SOURCE on Linux, so recvmmsg and sendmmsg are declared.
    ctypedef unsigned int socklen_t

    struct sockaddr_storage:
        pass

    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags

    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len

    struct timespec:
        pass

    int recvmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags, timespec *timeout)
    int sendmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags)
    int MSG_WAITFORONE
    int MSG_TRUNC


cdef enum:
    BATCH = 64  # datagrams per recvmmsg
    BUFSIZE = 4096  # bytes per datagram; a longer one (MSG_TRUNC) is dropped
    HEADER = 12  # a DNS header; shorter datagrams are dropped
    CHECK_EVERY = 1024  # batches between two looks at Python's signal handlers


cdef struct Batch:
    mmsghdr recv[BATCH]
    mmsghdr send[BATCH]
    iovec recv_iov[BATCH]
    iovec send_iov[BATCH]
    sockaddr_storage addrs[BATCH]
    unsigned char bufs[BATCH][BUFSIZE]
    unsigned long long answered
    unsigned long long batches
    unsigned long long dropped


cdef void _prepare(Batch *b) noexcept nogil:
    """Point every header at its iovec, and each receive at its buffer and address (calloc
    zeroed the rest); per datagram, only what changes is written."""
    cdef int i
    for i in range(BATCH):
        b.recv_iov[i].iov_base = b.bufs[i]
        b.recv_iov[i].iov_len = BUFSIZE
        b.recv[i].msg_hdr.msg_name = &b.addrs[i]
        b.recv[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
        b.recv[i].msg_hdr.msg_iov = &b.recv_iov[i]
        b.recv[i].msg_hdr.msg_iovlen = 1
        b.send[i].msg_hdr.msg_iov = &b.send_iov[i]
        b.send[i].msg_hdr.msg_iovlen = 1


cdef int _drain(Batch *b, int fd) noexcept nogil:
    """Echo batches; 0 when Python's signal handlers are due a look, else an errno."""
    cdef int i, got, n, sent, off, flags
    cdef socklen_t namelen
    cdef int interrupted = 0
    cdef unsigned long long until = b.batches + CHECK_EVERY
    while not interrupted and b.batches < until:
        got = recvmmsg(fd, b.recv, BATCH, MSG_WAITFORONE, NULL)
        if got < 0:
            if errno == EINTR or errno == EAGAIN:  # EAGAIN: SO_RCVTIMEO (EWOULDBLOCK on Linux)
                return 0
            return errno
        b.batches += 1
        n = 0
        for i in range(got):
            # The kernel wrote these two: keep them, and reset them for the next receive.
            flags = b.recv[i].msg_hdr.msg_flags
            namelen = b.recv[i].msg_hdr.msg_namelen
            b.recv[i].msg_hdr.msg_flags = 0
            b.recv[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            if b.recv[i].msg_len < HEADER or (flags & MSG_TRUNC):
                b.dropped += 1
                continue
            b.bufs[i][2] |= 0x80
            b.send_iov[n].iov_base = b.bufs[i]
            b.send_iov[n].iov_len = b.recv[i].msg_len
            b.send[n].msg_hdr.msg_name = &b.addrs[i]
            b.send[n].msg_hdr.msg_namelen = namelen
            n += 1
        off = 0
        while off < n:
            sent = sendmmsg(fd, &b.send[off], n - off, 0)
            if sent < 0:
                if errno == EINTR:
                    interrupted = 1  # the rest of the batch first, then the signal
                    continue
                # A full send buffer or an unreachable client: UDP drops this one and goes on.
                b.dropped += 1
                off += 1
                continue
            b.answered += sent
            off += sent
    return 0


def serve(int fd, list counts):
    """Echo on fd until a signal handler raises (or a receive fails), and let that out.

    counts gets [answered, batches, dropped] however serve() ends.
    """
    cdef Batch *b = <Batch *>calloc(1, sizeof(Batch))
    cdef int err = 0
    if b == NULL:
        raise MemoryError()
    _prepare(b)
    try:
        while True:
            with nogil:
                err = _drain(b, fd)
            if err:
                raise OSError(err, strerror(err).decode())
            PyErr_CheckSignals()
    finally:
        counts[:] = [b.answered, b.batches, b.dropped]
        free(b)
