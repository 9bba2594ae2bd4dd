#!/usr/bin/python3
"""Bad and unusual input, through libnbd (the nbd module, strict mode off) and
hand-made packets on a raw socket: the protocol's error replies, connections
staying in sync, and what must close a connection."""

import os
import socket
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (  # noqa: E402
    CMD_DISC, CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES, MiB, NBD_EINVAL,
    NBD_ENOSPC, NBD_EPERM, OPT_ABORT, OPT_EXPORT_NAME, OPT_INFO, OPT_LIST,
    OPT_STRUCTURED_REPLY, REP_ACK, REP_ERR_UNKNOWN, REP_ERR_UNSUP, REP_SERVER, RawNbd,
    Runner, Server, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, TFLAG_READ_ONLY, check,
    err_name, import_nbd, log, make_sparse, nbd_errno, nbd_handle, pattern, rep_name,
    recv_exact)

R = Runner(__doc__, budget=300)

SIZE = 80 * MiB  # above the 64 MiB request limit (raw_oversize_requests)
RO_SIZE = 8 * MiB


def setup(ctx):
    make_sparse(ctx.path("rw.img"), SIZE)
    with open(ctx.path("ro.img"), "wb") as f:
        f.write(pattern(99, RO_SIZE))
    ctx.srv = Server(ctx, exports=[("rw", ctx.path("rw.img"), False),
                                   ("ro", ctx.path("ro.img"), True)]).start()


def still_serving(ctx, what):
    """A fresh libnbd connection can write and read back: the server is fine."""
    check(ctx.srv.alive(), "blockserve died after %s:\n%s" % (what, ctx.srv.log_tail()))
    h = nbd_handle(ctx.srv, "rw")
    data = pattern(len(what), 4096)
    h.pwrite(data, 60 * MiB)
    check(h.pread(4096, 60 * MiB) == data, "read-back mismatch on a new connection after "
          + what)
    h.shutdown()


def expect_errno(got, want, what):
    check(got == want, "%s: got %s, want %s" % (what, err_name(got), err_name(want)))


# ---- libnbd: requests past the end ---------------------------------------------
@R.case
def beyond_end_libnbd(ctx):
    h = nbd_handle(ctx.srv, "rw", strict=False)
    check(h.get_size() == SIZE, "size %d" % h.get_size())
    good = pattern(1, 4096)
    h.pwrite(good, SIZE - 4096)
    cases = [
        ("read past the end", lambda: h.pread(4096, SIZE), NBD_EINVAL),
        ("read straddling the end", lambda: h.pread(8192, SIZE - 4096), NBD_EINVAL),
        ("read far past the end", lambda: h.pread(4096, 1 << 50), NBD_EINVAL),
        ("write past the end", lambda: h.pwrite(b"\xee" * 4096, SIZE), NBD_ENOSPC),
        ("write straddling the end", lambda: h.pwrite(b"\xee" * 8192, SIZE - 4096), NBD_ENOSPC),
        ("trim past the end", lambda: h.trim(4096, SIZE), NBD_EINVAL),
        ("trim straddling the end", lambda: h.trim(8192, SIZE - 4096), NBD_EINVAL),
    ]
    for what, fn, want in cases:
        got = nbd_errno(fn)
        log("%s -> %s" % (what, err_name(got)))
        expect_errno(got, want, what)
        # The connection stays usable: a valid read right after.
        check(h.pread(4096, SIZE - 4096) == good, "valid read after '%s' returned wrong data"
              % what)
    # WRITE_ZEROES past the end: the spec names ENOSPC for writes; accept EINVAL.
    got = nbd_errno(lambda: h.zero(4096, SIZE))
    log("write zeroes past the end -> %s" % err_name(got))
    check(got in (NBD_ENOSPC, NBD_EINVAL), "write zeroes past the end: %s" % err_name(got))
    # The straddling write must not have written its in-range half.
    check(h.pread(4096, SIZE - 4096) == good, "a refused straddling write changed data")
    h.shutdown()


@R.case
def beyond_end_simple_replies(ctx):
    # The same over simple replies (no structured replies negotiated).
    h = nbd_handle(ctx.srv, "rw", strict=False, structured=False)
    check(not h.get_structured_replies_negotiated(), "structured replies were negotiated")
    expect_errno(nbd_errno(lambda: h.pread(4096, SIZE)), NBD_EINVAL, "read past the end")
    expect_errno(nbd_errno(lambda: h.pwrite(b"x" * 4096, SIZE)), NBD_ENOSPC,
                 "write past the end")
    expect_errno(nbd_errno(lambda: h.trim(4096, SIZE)), NBD_EINVAL, "trim past the end")
    h.pread(4096, 0)
    h.shutdown()


@R.case
def misaligned_request(ctx):
    h = nbd_handle(ctx.srv, "rw", strict=False)
    nbd = import_nbd()
    mn = h.get_block_size(nbd.SIZE_MINIMUM)
    if mn <= 1:
        from bshelper import Skip
        raise Skip("minimum block size is 1: nothing is misaligned")
    got = nbd_errno(lambda: h.pread(mn, 1))
    log("read of %d bytes at offset 1 (minimum block size %d) -> %s" % (mn, mn, err_name(got)))
    expect_errno(got, NBD_EINVAL, "misaligned read")
    got = nbd_errno(lambda: h.pwrite(b"z" * 100, 0))
    expect_errno(got, NBD_EINVAL, "write of 100 bytes")
    h.pread(4096, 0)
    h.shutdown()


@R.case
def write_to_read_only_export(ctx):
    h = nbd_handle(ctx.srv, "ro", strict=False)
    check(h.is_read_only(), "export 'ro' is not advertised read-only")
    before = h.pread(4096, 0)
    check(before == pattern(99, RO_SIZE)[:4096], "ro export serves the wrong data")
    expect_errno(nbd_errno(lambda: h.pwrite(b"w" * 4096, 0)), NBD_EPERM, "write to ro export")
    expect_errno(nbd_errno(lambda: h.trim(4096, 0)), NBD_EPERM, "trim on ro export")
    expect_errno(nbd_errno(lambda: h.zero(4096, 0)), NBD_EPERM, "write zeroes on ro export")
    check(h.pread(4096, 0) == before, "the ro export changed")
    h.flush()  # FLUSH is allowed on a read-only export
    h.shutdown()
    with open(ctx.path("ro.img"), "rb") as f:
        check(f.read(4096) == before, "the ro export's file changed")


# ---- raw socket ------------------------------------------------------------------
@R.case
def raw_roundtrip_and_pipelining(ctx):
    c = RawNbd(ctx.srv.port)
    c.go_ok("rw")
    check(c.size == SIZE, "NBD_INFO_EXPORT size %d" % c.size)
    log("raw GO: size %d flags 0x%04x block sizes %s" % (c.size, c.tflags, c.block_size))
    check(c.block_size is not None, "no NBD_INFO_BLOCK_SIZE although the client asked for it")
    base = 30 * MiB
    blobs = {i: pattern(1000 + i, 64 * 1024) for i in range(1, 17)}
    for i, b in blobs.items():
        check(c.write(base + i * 65536, b, cookie=i) == 0, "write %d failed" % i)
    # 16 pipelined reads with distinct cookies, answered by cookie.
    for i in blobs:
        c.send_request(CMD_READ, base + i * 65536, 65536, cookie=0x1000 + i)
    seen = set()
    for _ in blobs:
        err, cookie, data = c.read_simple_reply({0x1000 + i: 65536 for i in blobs})
        check(err == 0, "pipelined read cookie %x: %s" % (cookie, err_name(err)))
        i = cookie - 0x1000
        check(i in blobs and cookie not in seen, "unexpected cookie 0x%x" % cookie)
        check(data == blobs[i], "pipelined read %d: wrong data" % i)
        seen.add(cookie)
    check(c.request(CMD_FLUSH)[0] == 0, "flush failed")
    c.send_request(CMD_DISC)
    check(c.expect_closed(), "server kept the connection after NBD_CMD_DISC")
    c.close()


@R.case
def raw_unknown_command(ctx):
    c = RawNbd(ctx.srv.port)
    c.go_ok("rw")
    err, _ = c.request(77, 0, 4096, cookie=0x77)
    log("command type 77 -> %s" % err_name(err))
    expect_errno(err, NBD_EINVAL, "unknown command 77")
    err, data = c.read(0, 4096)
    check(err == 0 and len(data) == 4096, "read after the unknown command: %s" % err_name(err))
    c.close()


@R.case
def raw_bad_request_magic_closes(ctx):
    c = RawNbd(ctx.srv.port)
    c.go_ok("rw")
    check(c.read(0, 512)[0] == 0, "read before the bad magic failed")
    c.send_request(CMD_READ, 0, 512, cookie=5, magic=0x12345678)
    check(c.expect_closed(10), "the connection stayed open after a bad request magic")
    c.close()
    still_serving(ctx, "a bad request magic")


@R.case
def raw_unknown_option_then_go(ctx):
    c = RawNbd(ctx.srv.port)
    for opt in (0x4242, 4, 9, 10, 11):  # unknown, PEEK_EXPORT, LIST/SET_META_CONTEXT, EXT headers
        replies = c.option(opt, b"\x00\x00\x00\x00")
        log("option %d -> %s" % (opt, [rep_name(r.type) for r in replies]))
        if opt == 0x4242:
            check(replies[-1].type == REP_ERR_UNSUP, "unknown option 0x4242 answered %s"
                  % rep_name(replies[-1].type))
        else:
            check(replies[-1].type & 0x80000000, "option %d: expected an error reply, got %s"
                  % (opt, rep_name(replies[-1].type)))
    # Negotiation continues: GO works on the same connection.
    c.go_ok("rw")
    check(c.read(0, 4096)[0] == 0, "read after GO failed")
    c.close()


@R.case
def raw_unknown_export_name(ctx):
    c = RawNbd(ctx.srv.port)
    t = c.go("no-such-export")
    log("GO 'no-such-export' -> %s" % rep_name(t))
    check(t == REP_ERR_UNKNOWN, "GO on an unknown export answered %s" % rep_name(t))
    t = c.go("no-such-export", opt=OPT_INFO)
    check(t == REP_ERR_UNKNOWN, "INFO on an unknown export answered %s" % rep_name(t))
    t = c.go("ro", opt=OPT_INFO)
    check(t == REP_ACK and c.size == RO_SIZE and c.tflags & TFLAG_READ_ONLY,
          "INFO 'ro': %s size %s flags %s" % (rep_name(t), c.size, c.tflags))
    c.go_ok("rw")
    check(c.size == SIZE, "GO after the failures gives size %s" % c.size)
    c.close()


@R.case
def raw_list_and_structured_reply(ctx):
    c = RawNbd(ctx.srv.port)
    replies = c.option(OPT_LIST)
    names = []
    for r in replies:
        if r.type == REP_SERVER:
            n = struct.unpack(">I", r.data[:4])[0]
            names.append(r.data[4:4 + n].decode())
    check(replies[-1].type == REP_ACK, "LIST ended with %s" % rep_name(replies[-1].type))
    check(sorted(names) == ["ro", "rw"], "LIST gave %s" % names)
    replies = c.option(OPT_STRUCTURED_REPLY)
    check(replies[-1].type == REP_ACK, "STRUCTURED_REPLY answered %s"
          % rep_name(replies[-1].type))
    c.close()


@R.case
def raw_reply_kinds_with_structured_replies(ctx):
    # With structured replies negotiated, a successful command without data
    # gets a 16-byte simple reply (the protocol allows it for every command but
    # READ, and libnbd then takes a reply with one recv() instead of two); a
    # READ, even of zero bytes, and an error get structured chunks.
    c = RawNbd(ctx.srv.port)
    check(c.option(OPT_STRUCTURED_REPLY)[-1].type == REP_ACK, "STRUCTURED_REPLY refused")
    c.go_ok("rw")

    def reply_header(cookie):
        magic = struct.unpack(">I", recv_exact(c.sock, 4))[0]
        if magic == SIMPLE_REPLY_MAGIC:
            err, got = struct.unpack(">IQ", recv_exact(c.sock, 12))
            check(got == cookie, "simple reply for cookie %d to cookie %d" % (got, cookie))
            return "simple", err, 0, 0
        check(magic == STRUCTURED_REPLY_MAGIC, "bad reply magic 0x%x" % magic)
        flags, rtype, got, length = struct.unpack(">HHQI", recv_exact(c.sock, 16))
        check(got == cookie, "chunk for cookie %d to cookie %d" % (got, cookie))
        check(flags & 1, "a single-chunk reply without NBD_REPLY_FLAG_DONE")
        return "chunk", rtype, length, recv_exact(c.sock, length) if length else b""

    data = pattern(5, 8192)
    no_data = [
        ("4k write", CMD_WRITE, 64 * 1024, data[:4096], 0),
        ("8k FUA write", CMD_WRITE, 128 * 1024, data, 1),
        ("flush", CMD_FLUSH, 0, b"", 0),
        ("trim", CMD_TRIM, 256 * 1024, b"", 0),
        ("write zeroes", CMD_WRITE_ZEROES, 512 * 1024, b"", 0),
        ("zero-length write", CMD_WRITE, 0, b"", 0),
    ]
    for cookie, (what, cmd, offset, payload, flags) in enumerate(no_data, start=10):
        length = len(payload) if cmd == CMD_WRITE else (0 if cmd == CMD_FLUSH else 4096)
        c.send_request(cmd, offset, length, cookie, flags, payload)
        kind, err, _, _ = reply_header(cookie)
        check(kind == "simple", "%s answered with a structured chunk" % what)
        check(err == 0, "%s failed: %s" % (what, err_name(err)))
    # A zero-length READ: never a simple reply, an NBD_REPLY_TYPE_NONE chunk.
    c.send_request(CMD_READ, 0, 0, cookie=30)
    kind, rtype, length, _ = reply_header(30)
    check(kind == "chunk" and rtype == 0 and length == 0,
          "zero-length read: %s type %d length %d" % (kind, rtype, length))
    # A READ: an OFFSET_DATA chunk with the bytes written above.
    c.send_request(CMD_READ, 128 * 1024, 8192, cookie=31)
    kind, rtype, length, body = reply_header(31)
    check(kind == "chunk" and rtype == 1 and length == 8 + 8192,
          "read: %s type %d length %d" % (kind, rtype, length))
    check(body[8:] == data, "read-back of the FUA write differs")
    # An error (a flush with a length): an error chunk, and the stream in sync.
    c.send_request(CMD_FLUSH, 0, 4096, cookie=32)
    kind, rtype, length, body = reply_header(32)
    check(kind == "chunk" and rtype & 0x8000 and
          struct.unpack(">I", body[:4])[0] == NBD_EINVAL,
          "bad flush: %s type 0x%x" % (kind, rtype))
    c.send_request(CMD_WRITE, 0, 4096, cookie=33, payload=data[4096:])
    check(reply_header(33)[:2] == ("simple", 0), "write after the error chunk")
    c.close()


@R.case
def raw_export_name_option(ctx):
    # The old NBD_OPT_EXPORT_NAME: no reply header, just size + flags (+ zeroes).
    for no_zeroes in (True, False):
        c = RawNbd(ctx.srv.port, no_zeroes=no_zeroes)
        c.send_option(OPT_EXPORT_NAME, b"ro")
        size, flags = struct.unpack(">QH", recv_exact(c.sock, 10))
        if not c.no_zeroes:
            check(recv_exact(c.sock, 124) == b"\0" * 124, "the 124 zero bytes are not zero")
        check(size == RO_SIZE and flags & TFLAG_READ_ONLY,
              "EXPORT_NAME 'ro': size %d flags 0x%x" % (size, flags))
        err, data = c.read(4096, 4096)
        check(err == 0 and data == pattern(99, RO_SIZE)[4096:8192], "read after EXPORT_NAME")
        c.close()
    # An unknown name with EXPORT_NAME: the server closes the connection.
    c = RawNbd(ctx.srv.port)
    c.send_option(OPT_EXPORT_NAME, b"nope")
    check(c.expect_closed(10), "EXPORT_NAME with an unknown name did not close")
    c.close()


@R.case
def raw_abort(ctx):
    c = RawNbd(ctx.srv.port)
    c.send_option(OPT_ABORT)
    try:
        r = c.read_opt_reply()
        check(r.type == REP_ACK, "ABORT answered %s" % rep_name(r.type))
    except EOFError:
        pass  # the spec allows closing without the ACK
    check(c.expect_closed(10), "the connection stayed open after NBD_OPT_ABORT")
    c.close()


@R.case
def raw_oversize_requests(ctx):
    # The limit is --max-request (default 64 MiB), above the 32 MiB that
    # clients that never asked may send.
    c = RawNbd(ctx.srv.port)
    c.go_ok("rw")
    limit = 64 * MiB
    too_big = limit + 4096
    err, _ = c.read(0, too_big)
    log("read of 64 MiB + 4 KiB -> %s" % err_name(err))
    expect_errno(err, NBD_EINVAL, "oversize read")
    err, _ = c.read(0, 128 * MiB)
    expect_errno(err, NBD_EINVAL, "128 MiB read")
    check(c.read(0, 4096)[0] == 0, "read after the oversize read failed")
    # The limit itself is allowed.
    c.sock.settimeout(30)
    err, data = c.read(0, limit)
    check(err == 0 and len(data) == limit, "a 64 MiB read failed: %s" % err_name(err))
    c.close()
    # An oversize write: its payload cannot be read and discarded (it may be up
    # to 4 GiB, or never come), so the server answers EINVAL where the client
    # still reads and closes the connection (issue 14). Only the header and a
    # little of the payload are sent.
    c = RawNbd(ctx.srv.port)
    c.go_ok("rw")
    c.send_request(CMD_WRITE, 0, too_big, cookie=0x0b16, payload=b"\xab" * 4096)
    try:
        magic, err, cookie = struct.unpack(">IIQ", recv_exact(c.sock, 16))
        log("write of 64 MiB + 4 KiB -> %s, then closed" % err_name(err))
        check(cookie == 0x0b16, "oversize write answered for cookie %x" % cookie)
        expect_errno(err, NBD_EINVAL, "oversize write")
    except (EOFError, ConnectionResetError):
        log("write of 64 MiB + 4 KiB -> closed before the reply was read")
    check(c.expect_closed(10), "the connection stayed open after an oversize write")
    c.close()
    c = RawNbd(ctx.srv.port)
    c.go_ok("rw")
    err, data = c.read(0, 4096)
    check(err == 0 and data != b"\xab" * 4096, "the oversize write was (partly) executed")
    c.close()
    still_serving(ctx, "oversize requests")


@R.case
def raw_disconnect_mid_write(ctx):
    # A long-lived client keeps working while others vanish mid-write.
    h = nbd_handle(ctx.srv, "rw")
    data = pattern(5, 65536)
    h.pwrite(data, 0)
    for i in range(10):
        c = RawNbd(ctx.srv.port)
        c.go_ok("rw")
        c.send_request(CMD_WRITE, 8 * MiB, 1 * MiB, cookie=i)
        c.sock.sendall(b"\xcd" * (512 * 1024))  # half the payload
        c.close()
    # Half-finished handshakes and headers too.
    for i in range(5):
        s = socket.create_connection(("127.0.0.1", ctx.srv.port), timeout=5)
        recv_exact(s, 18)
        s.sendall(struct.pack(">I", 3) + b"IHAVEOPT\x00\x00")  # half an option header
        s.close()
        c = RawNbd(ctx.srv.port)
        c.go_ok("rw")
        c.sock.sendall(struct.pack(">IHH", 0x25609513, 0, CMD_WRITE) + b"\x00" * 5)  # half a header
        c.close()
    time.sleep(0.5)
    check(h.pread(65536, 0) == data, "the long-lived client's data changed")
    h.pwrite(data[::-1], 65536)
    check(h.pread(65536, 65536) == data[::-1], "the long-lived client cannot write any more")
    h.shutdown()
    still_serving(ctx, "clients disconnecting mid-write")


@R.case
def raw_flags_and_zero_length(ctx):
    c = RawNbd(ctx.srv.port)
    c.go_ok("rw")
    # FUA write and write zeroes with FUA.
    check(c.write(4096, b"\x11" * 4096, cookie=1, flags=1) == 0, "FUA write failed")
    err = c.request(CMD_WRITE_ZEROES, 4096, 4096, cookie=2, flags=1)[0]
    check(err == 0, "FUA write zeroes: %s" % err_name(err))
    err, data = c.read(4096, 4096)
    check(err == 0 and data == b"\0" * 4096, "write zeroes did not zero")
    # An unknown command flag (bit 15) on a read: EINVAL, connection in sync.
    err, _ = c.request(CMD_READ, 0, 4096, cookie=3, flags=0x8000)
    log("read with flag 0x8000 -> %s" % err_name(err))
    check(err == NBD_EINVAL, "a read with an unknown flag answered %s" % err_name(err))
    # Flush with a nonzero length is malformed.
    err = c.request(CMD_FLUSH, 0, 4096, cookie=4)[0]
    log("flush with length 4096 -> %s" % err_name(err))
    check(err == NBD_EINVAL, "flush with a length answered %s" % err_name(err))
    err = c.request(CMD_TRIM, 0, 0, cookie=5)[0]
    log("zero-length trim -> %s" % err_name(err))
    check(c.read(0, 4096)[0] == 0, "read after the odd requests failed")
    c.close()


@R.case
def many_errors_in_a_pipeline(ctx):
    # Valid and invalid requests interleaved in one burst: every one answered.
    c = RawNbd(ctx.srv.port)
    c.go_ok("rw")
    expect = {}
    lens = {}
    for i in range(64):
        cookie = 0x5000 + i
        if i % 3 == 0:
            c.send_request(CMD_READ, SIZE, 4096, cookie=cookie)  # past the end
            expect[cookie] = NBD_EINVAL
        elif i % 3 == 1:
            c.send_request(77, 0, 0, cookie=cookie)
            expect[cookie] = NBD_EINVAL
        else:
            c.send_request(CMD_READ, i * 4096, 4096, cookie=cookie)
            expect[cookie] = 0
            lens[cookie] = 4096
    for _ in range(64):
        err, cookie, data = c.read_simple_reply(lens)
        check(cookie in expect, "unknown cookie 0x%x" % cookie)
        check(err == expect.pop(cookie), "cookie 0x%x answered %s" % (cookie, err_name(err)))
    check(not expect, "unanswered: %s" % sorted(expect))
    c.close()


@R.case
def concurrent_bad_and_good_clients(ctx):
    # Bad clients hammering while a good one runs.
    stop = threading.Event()
    errors = []

    def bad():
        while not stop.is_set():
            try:
                c = RawNbd(ctx.srv.port, timeout=5)
                c.go_ok("rw")
                c.request(77, 0, 0, cookie=1)
                c.send_request(CMD_READ, 0, 512, magic=0xdeadbeef)
                c.expect_closed(5)
                c.close()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=bad) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        h = nbd_handle(ctx.srv, "rw")
        for i in range(200):
            b = pattern(i, 4096)
            h.pwrite(b, 40 * MiB + i * 4096)
            check(h.pread(4096, 40 * MiB + i * 4096) == b, "good client mismatch at %d" % i)
        h.shutdown()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    check(not errors, "bad clients hit unexpected errors: %s" % errors[:3])


if __name__ == "__main__":
    sys.exit(R.main(setup))
