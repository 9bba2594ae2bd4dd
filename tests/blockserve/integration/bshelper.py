"""Shared helpers for the blockserve integration tests (real clients, no mocks).

Every test program:
  * takes `--blockserve PATH` (the server binary), optional `--keep` (keep the
    temp dir) and `--verbose`;
  * starts its own blockserve(s) on 127.0.0.1 on a free port, with files in a
    temp dir under /var/tmp (O_DIRECT needs a real file system; override with
    BLOCKSERVE_TEST_TMPDIR);
  * runs its cases through `Runner`, which prints one PASS/FAIL/SKIPPED line per
    case and exits 1 if any case failed, 77 if every case was skipped, else 0.

Only the Python standard library and Debian's python3-libnbd (`nbd`) are used.
"""

import argparse
import errno
import hashlib
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

# ---- NBD wire constants (doc/proto.md) ---------------------------------------
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_ERR_UNSUP = 0x80000001
REP_ERR_POLICY = 0x80000002
REP_ERR_INVALID = 0x80000003
REP_ERR_PLATFORM = 0x80000004
REP_ERR_TLS_REQD = 0x80000005
REP_ERR_UNKNOWN = 0x80000006
REP_ERR_SHUTDOWN = 0x80000007
REP_ERR_BLOCK_SIZE_REQD = 0x80000008
REP_ERR_TOO_BIG = 0x80000009

REP_NAMES = {
    REP_ACK: "ACK", REP_SERVER: "SERVER", REP_INFO: "INFO",
    REP_ERR_UNSUP: "ERR_UNSUP", REP_ERR_POLICY: "ERR_POLICY",
    REP_ERR_INVALID: "ERR_INVALID", REP_ERR_PLATFORM: "ERR_PLATFORM",
    REP_ERR_TLS_REQD: "ERR_TLS_REQD", REP_ERR_UNKNOWN: "ERR_UNKNOWN",
    REP_ERR_SHUTDOWN: "ERR_SHUTDOWN", REP_ERR_BLOCK_SIZE_REQD: "ERR_BLOCK_SIZE_REQD",
    REP_ERR_TOO_BIG: "ERR_TOO_BIG",
}

INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

TFLAG_HAS_FLAGS = 1 << 0
TFLAG_READ_ONLY = 1 << 1
TFLAG_SEND_FLUSH = 1 << 2
TFLAG_SEND_FUA = 1 << 3
TFLAG_SEND_TRIM = 1 << 5
TFLAG_SEND_WRITE_ZEROES = 1 << 6
TFLAG_CAN_MULTI_CONN = 1 << 8

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_WRITE_ZEROES = 6
CMD_FLAG_FUA = 1

# NBD error values (the same numbers as Linux errno for these).
NBD_EPERM = 1
NBD_EIO = 5
NBD_EINVAL = 22
NBD_ENOSPC = 28
NBD_EOVERFLOW = 75
NBD_ESHUTDOWN = 108

MiB = 1 << 20
GiB = 1 << 30


def rep_name(t):
    return REP_NAMES.get(t, "0x%08x" % t)


def err_name(e):
    return errno.errorcode.get(e, str(e)) if e else "OK"


# ---- Test outcome signalling ---------------------------------------------------
class Skip(Exception):
    """Raise in a case to mark it SKIPPED with a reason."""


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_until(pred, timeout, what):
    """Polls pred() until it is true; fails the case after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise Failure("timed out after %.1fs waiting for %s" % (timeout, what))


def require_tool(name):
    path = shutil.which(name)
    if not path:
        raise Skip("%s is not installed" % name)
    return path


def log(msg):
    print("    " + msg, flush=True)


# ---- Files -------------------------------------------------------------------
def make_sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def make_random_file(path, size, chunk=4 * MiB):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            b = os.urandom(n)
            h.update(b)
            f.write(b)
            left -= n
    return h.hexdigest()


def sha256_file(path, chunk=4 * MiB):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def pattern(seed, length):
    """Deterministic non-trivial bytes."""
    out = bytearray(length)
    for i in range(0, length, 4096):
        n = min(4096, length - i)
        block = hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        out[i:i + n] = (block * (n // 32 + 1))[:n]
    return bytes(out)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want=None):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if want is None else min(hard, max(soft, want))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ---- The server ----------------------------------------------------------------
class ServerError(Exception):
    pass


def _die_with_parent():
    """In the child before exec: SIGKILL it if the test process dies, so a
    killed test (ctest timeout) never leaves a server behind."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Process:
    """A server process started from `argv()` with its output in
    ctx.tmp/NAME.log, stopped by the test's clean-up (ctx.servers). The one
    place that starts, probes, stops and reads the log of a server process:
    Server (a blockserve on a TCP port) and opshelper.Proc (any command line)
    build on it."""

    def __init__(self, ctx, name):
        self.ctx = ctx
        self.name = name
        self.proc = None
        self.log_path = os.path.join(ctx.tmp, "%s.log" % name)
        self.returncode = None

    def argv(self):
        raise NotImplementedError

    def spawn(self, env=None):
        """Starts argv() (in its own session, killed if the test dies)."""
        argv = self.argv()
        logf = open(self.log_path, "ab")
        logf.write(("=== start: %s\n" % " ".join(argv)).encode())
        logf.flush()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent, env=env)
        logf.close()
        self.ctx.servers.append(self)

    def wait_greeting(self, probe, timeout, where):
        """Waits until `probe()` (a connected socket) is greeted with NBDMAGIC.
        Raises ServerError if the process exits first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError("%s exited with %s before accepting connections:\n%s"
                                  % (self.name, self.proc.returncode, self.log_tail(30)))
            try:
                with probe() as s:
                    s.settimeout(5)
                    greet = recv_exact(s, 8)
                    if struct.unpack(">Q", greet)[0] != NBDMAGIC:
                        raise ServerError("%s answered without NBDMAGIC" % where)
                    return
            except (ConnectionRefusedError, ConnectionResetError, socket.timeout, EOFError,
                    OSError):
                time.sleep(0.1)
        raise ServerError("%s did not accept an NBD connection on %s within %ds:\n%s"
                          % (self.name, where, timeout, self.log_tail(30)))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.returncode = "SIGKILL after SIGTERM timeout"
                self.proc = None
                return self.returncode
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def kill(self):
        """SIGKILL (kill -9) and reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.returncode = self.proc.returncode
        self.proc = None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:]) or "(no log)"


class Server(Process):
    """One blockserve process on 127.0.0.1 and a free port.

    exports: list of (name, path, read_only). None: no --export (embedded
    default, --data-dir under the temp dir).
    """

    def __init__(self, ctx, exports=None, extra=(), metrics=False, port=None, name="bs",
                 workers=None, data_dir=None):
        super().__init__(ctx, name)
        self.data_dir = data_dir
        self.exports = exports
        self.extra = list(extra)
        self.want_metrics = metrics
        self.port = port
        self.metrics_port = None
        self.workers = workers

    def argv(self):
        a = [self.ctx.blockserve, "--listen", "127.0.0.1", "--port", str(self.port)]
        if self.exports is None:
            a += ["--data-dir", self.data_dir or os.path.join(self.ctx.tmp, "data")]
        else:
            for name, path, ro in self.exports:
                a += ["--export", "%s=%s%s" % (name, path, ",ro" if ro else "")]
        if self.workers:
            a += ["--workers", str(self.workers)]
        if self.metrics_port:
            a += ["--metrics-port", str(self.metrics_port)]
        return a + self.extra

    def start(self, timeout=30):
        fixed_port = self.port is not None
        last = None
        for attempt in range(6):
            if not fixed_port:
                self.port = free_port()
            if self.want_metrics:
                self.metrics_port = free_port()
                while self.metrics_port == self.port:
                    self.metrics_port = free_port()
            self.spawn()
            try:
                self.wait_ready(timeout)
                return self
            except ServerError as e:
                last = e
                self.kill()
                text = self.log_tail(20)
                if "in use" in text.lower() and not fixed_port:
                    continue  # lost a port race: pick another
                if fixed_port and "in use" in text.lower() and attempt < 5:
                    time.sleep(1)  # a restart on the same port: TIME_WAIT/old socket
                    continue
                raise
        raise last

    def wait_ready(self, timeout):
        self.wait_greeting(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=2),
                           timeout, "port %d" % self.port)

    def uri(self, export="", scheme="nbd"):
        return "%s://127.0.0.1:%d/%s" % (scheme, self.port, export)


# ---- Running commands -------------------------------------------------------------
def run(argv, timeout=120, check_rc=True, env=None, quiet=False, cwd=None):
    if not quiet:
        log("$ " + " ".join(argv))
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise Failure("timed out after %ss: %s\nstdout: %s\nstderr: %s" % (
            timeout, " ".join(argv), (e.stdout or b"")[-2000:], (e.stderr or b"")[-2000:]))
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if check_rc and p.returncode != 0:
        raise Failure("exit %d: %s\nstdout: %s\nstderr: %s" % (
            p.returncode, " ".join(argv), out[-3000:], err[-3000:]))
    return p.returncode, out, err


# ---- Raw socket NBD client ----------------------------------------------------------
def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += b
    return bytes(buf)


class OptReply:
    def __init__(self, opt, rtype, data):
        self.opt, self.type, self.data = opt, rtype, data

    def __repr__(self):
        return "OptReply(opt=%d, %s, %d bytes)" % (self.opt, rep_name(self.type), len(self.data))


class RawNbd:
    """A hand-written fixed-newstyle client on a plain socket."""

    def __init__(self, port, timeout=10, no_zeroes=True, connect=True):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.size = None
        self.tflags = None
        self.block_size = None
        self.no_zeroes = no_zeroes
        if connect:
            self.greet()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def greet(self):
        magic, opt_magic, hflags = struct.unpack(">QQH", recv_exact(self.sock, 18))
        check(magic == NBDMAGIC, "bad NBDMAGIC 0x%x" % magic)
        check(opt_magic == IHAVEOPT, "not a newstyle server (0x%x)" % opt_magic)
        check(hflags & FLAG_FIXED_NEWSTYLE, "server does not offer fixed newstyle")
        self.hflags = hflags
        cflags = FLAG_FIXED_NEWSTYLE
        if self.no_zeroes and hflags & FLAG_NO_ZEROES:
            cflags |= FLAG_NO_ZEROES
        else:
            self.no_zeroes = False
        self.sock.sendall(struct.pack(">I", cflags))

    def send_option(self, opt, data=b""):
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def read_opt_reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(self.sock, 20))
        check(magic == REPLY_MAGIC, "bad option reply magic 0x%x" % magic)
        data = recv_exact(self.sock, length) if length else b""
        return OptReply(opt, rtype, data)

    def option(self, opt, data=b""):
        """Send an option, collect replies until a final one (ACK or error)."""
        self.send_option(opt, data)
        replies = []
        while True:
            r = self.read_opt_reply()
            check(r.opt == opt, "reply for option %d to option %d" % (r.opt, opt))
            replies.append(r)
            if r.type == REP_ACK or r.type & 0x80000000:
                return replies

    def go(self, name="", info_block_size=True, opt=OPT_GO):
        """NBD_OPT_GO (or INFO). Returns the final reply type; fills size/flags."""
        infos = [INFO_BLOCK_SIZE] if info_block_size else []
        nb = name.encode()
        data = struct.pack(">I", len(nb)) + nb + struct.pack(">H", len(infos))
        data += b"".join(struct.pack(">H", i) for i in infos)
        replies = self.option(opt, data)
        for r in replies:
            if r.type == REP_INFO and len(r.data) >= 2:
                itype = struct.unpack(">H", r.data[:2])[0]
                if itype == INFO_EXPORT:
                    self.size, self.tflags = struct.unpack(">QH", r.data[2:12])
                elif itype == INFO_BLOCK_SIZE:
                    self.block_size = struct.unpack(">III", r.data[2:14])
        return replies[-1].type

    def go_ok(self, name=""):
        t = self.go(name)
        check(t == REP_ACK, "NBD_OPT_GO '%s' answered %s" % (name, rep_name(t)))
        check(self.size is not None, "NBD_OPT_GO '%s': no NBD_INFO_EXPORT before ACK" % name)
        return self

    # -- transmission --
    def send_request(self, cmd, offset=0, length=0, cookie=1, flags=0, payload=b"",
                     magic=REQUEST_MAGIC):
        hdr = struct.pack(">IHHQQI", magic, flags, cmd, cookie, offset, length)
        self.sock.sendall(hdr + payload)

    def read_simple_reply(self, data_len_for=None):
        """Reads one simple reply; data_len_for: {cookie: read length} for reads."""
        magic, err, cookie = struct.unpack(">IIQ", recv_exact(self.sock, 16))
        check(magic == SIMPLE_REPLY_MAGIC, "bad reply magic 0x%x" % magic)
        data = b""
        if err == 0 and data_len_for and data_len_for.get(cookie):
            data = recv_exact(self.sock, data_len_for[cookie])
        return err, cookie, data

    def request(self, cmd, offset=0, length=0, cookie=1, flags=0, payload=b""):
        self.send_request(cmd, offset, length, cookie, flags, payload)
        err, c, data = self.read_simple_reply({cookie: length} if cmd == CMD_READ else None)
        check(c == cookie, "reply cookie %d for request cookie %d" % (c, cookie))
        return err, data

    def read(self, offset, length, cookie=7):
        return self.request(CMD_READ, offset, length, cookie)

    def write(self, offset, data, cookie=8, flags=0):
        return self.request(CMD_WRITE, offset, len(data), cookie, flags, data)[0]

    def expect_closed(self, timeout=10):
        """True if the server closes the connection (EOF/RST) within timeout."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                b = self.sock.recv(65536)
                if not b:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False


# ---- libnbd ----------------------------------------------------------------------
def import_nbd():
    try:
        import nbd  # noqa: F401
        return nbd
    except ImportError:
        raise Skip("python3-libnbd (the nbd module) is not available to %s" % sys.executable)


def nbd_handle(server, export="", strict=True, structured=True):
    nbd = import_nbd()
    h = nbd.NBD()
    if not strict:
        h.set_strict_mode(0)
    if not structured:
        h.set_request_structured_replies(False)
    h.set_export_name(export)
    h.connect_tcp("127.0.0.1", str(server.port))
    return h


def nbd_errno(fn, *args, **kw):
    """Run a libnbd call; return 0 on success or the errno it failed with."""
    nbd = import_nbd()
    try:
        fn(*args, **kw)
        return 0
    except nbd.Error as e:
        return e.errnum if e.errnum is not None else -1


# ---- The runner --------------------------------------------------------------------
class Context:
    def __init__(self, args):
        self.args = args
        self.blockserve = os.path.abspath(args.blockserve)
        self.servers = []
        base = os.environ.get("BLOCKSERVE_TEST_TMPDIR", "/var/tmp")
        self.tmp = tempfile.mkdtemp(prefix="blockserve-it-", dir=base)
        self.notes = []

    def check_odirect(self):
        p = os.path.join(self.tmp, ".odirect-probe")
        make_sparse(p, 1 * MiB)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
            os.close(fd)
        except OSError as e:
            raise Skip("%s does not support O_DIRECT (%s): set BLOCKSERVE_TEST_TMPDIR"
                       % (self.tmp, e))
        finally:
            os.unlink(p)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def cleanup(self):
        for s in self.servers:
            try:
                s.stop(timeout=10)
            except Exception:
                s.kill()
        if self.args.keep:
            print("temp dir kept: %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Runner:
    def __init__(self, description, budget=600):
        self.description = description
        self.cases = []
        self.budget = budget

    def case(self, fn):
        self.cases.append(fn)
        return fn

    def main(self, setup=None):
        ap = argparse.ArgumentParser(description=self.description)
        ap.add_argument("--blockserve", required=True, help="path to the blockserve binary")
        ap.add_argument("--keep", action="store_true", help="keep the temp dir")
        ap.add_argument("--only", action="append", help="run only these cases")
        ap.add_argument("--budget", type=int, default=self.budget,
                        help="seconds before the whole program is failed")
        args = ap.parse_args()
        if not os.access(args.blockserve, os.X_OK):
            print("SKIPPED: %s is not built" % args.blockserve)
            return 77

        def on_alarm(signum, frame):
            raise Failure("time budget of %ds for this test program exceeded" % args.budget)

        signal.signal(signal.SIGALRM, on_alarm)

        def on_term(signum, frame):
            raise Failure("interrupted by signal %d" % signum)

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.alarm(args.budget)
        ctx = Context(args)
        results = []
        try:
            try:
                ctx.check_odirect()
                if setup:
                    setup(ctx)
            except Skip as e:
                for fn in self.cases:
                    print("SKIPPED %s: %s" % (fn.__name__, e), flush=True)
                return 77
            except Exception:
                print("FAIL setup:\n%s" % traceback.format_exc(), flush=True)
                return 1
            for fn in self.cases:
                if args.only and fn.__name__ not in args.only:
                    continue
                print("--- %s" % fn.__name__, flush=True)
                t0 = time.monotonic()
                first_server = len(ctx.servers)
                try:
                    fn(ctx)
                    dt = time.monotonic() - t0
                    print("PASS %s (%.1fs)" % (fn.__name__, dt), flush=True)
                    results.append("pass")
                except Skip as e:
                    print("SKIPPED %s: %s" % (fn.__name__, e), flush=True)
                    results.append("skip")
                except Exception as e:
                    dt = time.monotonic() - t0
                    tb = traceback.format_exc()
                    print("FAIL %s (%.1fs): %s\n%s" % (fn.__name__, dt, e, tb), flush=True)
                    shown = []
                    for s in ctx.servers[first_server:] or ctx.servers[:1]:
                        if s in shown:
                            continue
                        shown.append(s)
                        if s.proc is not None or os.path.exists(s.log_path):
                            print("    server log (%s), last lines:\n%s" % (
                                s.name, "\n".join("      | " + l for l in
                                                  s.log_tail(25).splitlines())), flush=True)
                    results.append("fail")
                    if isinstance(e, Failure) and "time budget" in str(e):
                        break
        finally:
            signal.alarm(0)
            ctx.cleanup()
        for n in ctx.notes:
            print("NOTE: %s" % n)
        npass, nfail, nskip = (results.count(k) for k in ("pass", "fail", "skip"))
        print("summary: %d passed, %d failed, %d skipped" % (npass, nfail, nskip), flush=True)
        if nfail:
            return 1
        if results and nskip == len(results):
            return 77
        return 0


# ---- Loop devices (root only) ----------------------------------------------------
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16


class LoopDevice:
    """A loop block device over `backing` with `block_size`-byte logical
    blocks (LOOP_CONFIGURE, Linux 5.8+). It is configured with AUTOCLEAR and
    this object holds it open, so the kernel detaches it when the last opener
    (this test, the server) is gone, even if the test is killed. Raises Skip
    when the machine cannot provide one (not root, no loop driver)."""

    def __init__(self, backing, block_size=4096, direct_io=True):
        import fcntl
        self.fd = None
        self.path = None
        if os.geteuid() != 0:
            raise Skip("loop devices need root (euid %d)" % os.geteuid())
        try:
            ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise Skip("no loop driver: /dev/loop-control: %s" % e.strerror)
        last = None
        try:
            for _ in range(8):  # another process may take the free device first
                n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                path = "/dev/loop%d" % n
                if not os.path.exists(path):
                    os.mknod(path, 0o660 | 0o060000, os.makedev(7, n))
                bfd = os.open(backing, os.O_RDWR | os.O_CLOEXEC)
                lfd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_DIRECT_IO if direct_io else 0)
                # struct loop_config { u32 fd; u32 block_size; struct loop_info64 info (232
                # bytes, lo_flags at offset 52); u64 reserved[8]; }
                info = bytearray(232)
                struct.pack_into("=I", info, 52, flags)
                name = os.path.basename(backing).encode()[:63]
                info[56:56 + len(name)] = name
                cfg = struct.pack("=II", bfd, block_size) + bytes(info) + bytes(64)
                try:
                    fcntl.ioctl(lfd, LOOP_CONFIGURE, cfg)
                except OSError as e:
                    os.close(lfd)
                    last = e
                    if e.errno == errno.EBUSY:
                        continue
                    if direct_io and e.errno == errno.EINVAL:
                        direct_io = False  # backing fs without O_DIRECT: buffered loop
                        continue
                    raise Skip("LOOP_CONFIGURE on %s failed: %s" % (path, e.strerror))
                finally:
                    os.close(bfd)
                self.fd, self.path = lfd, path
                return
        finally:
            os.close(ctl)
        raise Skip("no free loop device (%s)" % last)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def logical_block_size(path):
    """BLKSSZGET of a block device."""
    import fcntl
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return struct.unpack("=i", fcntl.ioctl(fd, 0x1268, b"\0" * 4))[0]
    finally:
        os.close(fd)


def nbd_handle_any_alignment(server, export=""):
    """A libnbd handle that behaves like a client that never asked for block
    sizes (the kernel's nbd-client, NBD_OPT_EXPORT_NAME clients): no
    NBD_INFO_BLOCK_SIZE in NBD_OPT_GO and no client-side checks at all, so
    unaligned requests reach the server."""
    nbd = import_nbd()
    h = nbd.NBD()
    h.set_request_block_size(False)
    h.set_strict_mode(0)
    h.set_export_name(export)
    h.connect_tcp("127.0.0.1", str(server.port))
    return h


def aio_wait_all(handles_cookies, timeout=120):
    """Drive several libnbd handles from one thread (select over their fds)
    until every cookie in {handle: {cookie: tag}} completed. Returns
    [(tag, errno)] in completion order; errno 0 = success."""
    import select
    nbd = import_nbd()
    done = []
    deadline = time.monotonic() + timeout
    while any(handles_cookies.values()):
        if time.monotonic() > deadline:
            raise Failure("%d commands did not complete within %ds"
                          % (sum(len(c) for c in handles_cookies.values()), timeout))
        rd, wr, fdmap = [], [], {}
        for h, cookies in handles_cookies.items():
            if not cookies:
                continue
            fd = h.aio_get_fd()
            d = h.aio_get_direction()
            fdmap[fd] = h
            if d & nbd.AIO_DIRECTION_READ:
                rd.append(fd)
            if d & nbd.AIO_DIRECTION_WRITE:
                wr.append(fd)
        r, w, _ = select.select(rd, wr, [], 1.0)
        for fd in r:
            fdmap[fd].aio_notify_read()
        for fd in w:
            if fdmap[fd].aio_get_direction() & nbd.AIO_DIRECTION_WRITE:
                fdmap[fd].aio_notify_write()
        for h, cookies in handles_cookies.items():
            for ck in list(cookies):
                try:
                    if not h.aio_command_completed(ck):
                        continue
                    err = 0
                except nbd.Error as e:
                    err = e.errnum if e.errnum is not None else -1
                done.append((cookies.pop(ck), err))
    return done


# ---- Page cache state of a file (cachestat, Linux 6.5+) -------------------------
class CacheStat:
    def __init__(self, nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted):
        self.cache, self.dirty, self.writeback = nr_cache, nr_dirty, nr_writeback
        self.evicted, self.recently_evicted = nr_evicted, nr_recently_evicted

    def __repr__(self):
        return "pages cached %d dirty %d writeback %d" % (self.cache, self.dirty, self.writeback)


def cachestat(path, off, length):
    """The page cache state of bytes [off, off+length) of `path` (pages). Raises
    Skip where the kernel has no cachestat (before 6.5)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    rng = (ctypes.c_uint64 * 2)(off, length)
    out = (ctypes.c_uint64 * 5)()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        rc = libc.syscall(451, fd, ctypes.byref(rng), ctypes.byref(out), 0)  # __NR_cachestat
        e = ctypes.get_errno()
    finally:
        os.close(fd)
    if rc != 0:
        if e in (errno.ENOSYS, errno.EPERM):
            raise Skip("cachestat(2) is not available (%s; Linux 6.5+)" % errno.errorcode.get(e))
        raise OSError(e, "cachestat(%s): %s" % (path, os.strerror(e)))
    return CacheStat(*out)


# ---- Prometheus metrics ------------------------------------------------------------
def scrape_metrics(server):
    """{(name, frozenset(label pairs)): value} from the server's /metrics
    (start it with metrics=True)."""
    import re
    import urllib.request
    url = "http://127.0.0.1:%d/metrics" % server.metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$', line)
        if not m or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))
