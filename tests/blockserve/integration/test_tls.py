#!/usr/bin/python3
"""TLS: certificates made with openssl (CA, server with subjectAltName
IP:127.0.0.1 and DNS:localhost, client); nbdinfo/nbdcopy/libnbd over nbds://,
--tls=on (optional) and --tls=require (plaintext refused with ERR_TLS_REQD),
STARTTLS by hand with Python's ssl, and client certificates with --tls-ca."""

import hashlib
import json
import os
import shutil
import ssl
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (  # noqa: E402
    MiB, OPT_GO, OPT_INFO, OPT_LIST, OPT_STARTTLS, OPT_STRUCTURED_REPLY, REP_ACK,
    REP_ERR_TLS_REQD, RawNbd, Runner, Server, Skip, check, import_nbd, log, make_random_file,
    make_sparse, pattern, rep_name, require_tool, run)

R = Runner(__doc__, budget=360)

SIZE = 64 * MiB


def openssl(ctx, *args):
    run(["openssl"] + list(args), timeout=60, quiet=True)


def make_pki(ctx):
    require_tool("openssl")
    d = ctx.path("pki")
    os.makedirs(d)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    with open(p("ca.cnf"), "w") as f:
        f.write("[req]\ndistinguished_name=dn\nx509_extensions=v3_ca\nprompt=no\n"
                "[dn]\nCN=ringline test CA\n"
                "[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\n")
    with open(p("server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    with open(p("client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n")
    openssl(ctx, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-config", p("ca.cnf"), "-keyout", p("ca-key.pem"), "-out", p("ca-cert.pem"))
    for who, cn in (("server", "localhost"), ("client", "ringline-test-client")):
        openssl(ctx, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % cn,
                "-keyout", p("%s-key.pem" % who), "-out", p("%s.csr" % who))
        openssl(ctx, "x509", "-req", "-in", p("%s.csr" % who), "-CA", p("ca-cert.pem"),
                "-CAkey", p("ca-key.pem"), "-CAcreateserial", "-days", "2",
                "-extfile", p("%s.ext" % who), "-out", p("%s-cert.pem" % who))
    # libnbd's certificate directories.
    ca_only = ctx.path("client-ca-only")
    os.makedirs(ca_only)
    shutil.copy(p("ca-cert.pem"), os.path.join(ca_only, "ca-cert.pem"))
    with_cert = ctx.path("client-with-cert")
    os.makedirs(with_cert)
    shutil.copy(p("ca-cert.pem"), os.path.join(with_cert, "ca-cert.pem"))
    shutil.copy(p("client-cert.pem"), os.path.join(with_cert, "client-cert.pem"))
    shutil.copy(p("client-key.pem"), os.path.join(with_cert, "client-key.pem"))
    # A second, unrelated CA: the server's certificate must not verify with it.
    other = ctx.path("other-ca")
    os.makedirs(other)
    openssl(ctx, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-config", p("ca.cnf"), "-keyout", os.path.join(other, "ca-key.pem"),
            "-out", os.path.join(other, "ca-cert.pem"))
    ctx.pki = d
    ctx.ca_only = ca_only
    ctx.with_cert = with_cert
    ctx.other_ca = other


def setup(ctx):
    require_tool("nbdinfo")
    make_pki(ctx)
    make_sparse(ctx.path("tls.img"), SIZE)
    ctx.on = None
    ctx.req = None
    ctx.mtls = None


def server(ctx, mode, ca=False):
    key = "mtls" if ca else ("on" if mode == "on" else "req")
    if getattr(ctx, key) is None:
        extra = ["--tls=%s" % mode, "--tls-cert", os.path.join(ctx.pki, "server-cert.pem"),
                 "--tls-key", os.path.join(ctx.pki, "server-key.pem")]
        if ca:
            extra += ["--tls-ca", os.path.join(ctx.pki, "ca-cert.pem")]
        srv = Server(ctx, exports=[("default", ctx.path("tls.img"), False)], extra=extra,
                     name="tls-%s" % key).start()
        setattr(ctx, key, srv)
    return getattr(ctx, key)


def tls_uri(srv, certdir, export="default"):
    return "nbds://127.0.0.1:%d/%s?tls-certificates=%s" % (srv.port, export, certdir)


def nbdinfo(uri, check_rc=True):
    return run(["nbdinfo", "--json", "--no-content", uri], timeout=60, check_rc=check_rc)


@R.case
def tls_on_nbdinfo_with_certificates(ctx):
    srv = server(ctx, "on")
    _, out, _ = nbdinfo(tls_uri(srv, ctx.ca_only))
    doc = json.loads(out)
    check(doc.get("TLS") is True, "nbdinfo says TLS=%r" % doc.get("TLS"))
    e = doc["exports"][0]
    check(e["export-size"] == SIZE, "size over TLS: %s" % e["export-size"])
    log("nbdinfo over TLS: TLS=%s size=%d" % (doc["TLS"], e["export-size"]))
    # localhost is in the certificate too.
    _, out, _ = nbdinfo("nbds://localhost:%d/default?tls-certificates=%s"
                        % (srv.port, ctx.ca_only))
    check(json.loads(out).get("TLS") is True, "TLS via localhost")


@R.case
def tls_on_plaintext_still_allowed(ctx):
    srv = server(ctx, "on")
    _, out, _ = nbdinfo(srv.uri("default"))
    check(json.loads(out).get("TLS") is False, "plaintext nbdinfo reports TLS")


@R.case
def tls_untrusted_ca_refused(ctx):
    srv = server(ctx, "on")
    rc, out, err = nbdinfo(tls_uri(srv, ctx.other_ca), check_rc=False)
    log("nbdinfo with an unrelated CA: exit %d: %s" % (rc, err.strip()[:200]))
    check(rc != 0, "nbdinfo verified the server against an unrelated CA")
    check(srv.alive(), "server died after a failed TLS handshake")
    nbdinfo(tls_uri(srv, ctx.ca_only))


@R.case
def tls_data_roundtrip_libnbd(ctx):
    nbd = import_nbd()
    srv = server(ctx, "on")
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(ctx.ca_only)
    h.set_export_name("default")
    h.connect_tcp("127.0.0.1", str(srv.port))
    check(h.get_tls_negotiated(), "libnbd did not negotiate TLS")
    blobs = [(i * 3 * MiB + 4096 * i, pattern(i, (i + 1) * 256 * 1024)) for i in range(8)]
    for off, b in blobs:
        h.pwrite(b, off, nbd.CMD_FLAG_FUA if off % 2 else 0)
    h.flush()
    for off, b in blobs:
        check(h.pread(len(b), off) == b, "TLS read-back mismatch at %d" % off)
    # 32 MiB in one request over TLS (many records).
    big = pattern(77, 32 * MiB)
    h.pwrite(big, 32 * MiB)
    check(h.pread(32 * MiB, 32 * MiB) == big, "32 MiB TLS read-back mismatch")
    h.shutdown()


@R.case
def tls_nbdcopy_roundtrip(ctx):
    require_tool("nbdcopy")
    srv = server(ctx, "on")
    src = ctx.path("tls-src.bin")
    digest = make_random_file(src, 32 * MiB)
    uri = tls_uri(srv, ctx.ca_only)
    run(["nbdcopy", src, uri], timeout=120)
    out = ctx.path("tls-back.bin")
    # The export is 64 MiB; copy back only what was written (nbdcopy has no
    # length option here): through a 32 MiB destination file it refuses, so
    # copy all and compare the head.
    run(["nbdcopy", uri, out], timeout=120)
    with open(out, "rb") as f:
        head = f.read(32 * MiB)
    check(hashlib.sha256(head).hexdigest() == digest, "nbdcopy over TLS: data differs")
    os.unlink(out)


@R.case
def tls_require_refuses_plaintext(ctx):
    srv = server(ctx, "require")
    rc, out, err = nbdinfo(srv.uri("default"), check_rc=False)
    log("plaintext nbdinfo against --tls=require: exit %d: %s" % (rc, err.strip()[:300]))
    check(rc != 0, "plaintext nbdinfo succeeded against --tls=require:\n%s" % out)
    c = RawNbd(srv.port)
    for opt, name in ((OPT_GO, "GO"), (OPT_INFO, "INFO")):
        t = c.go("default", opt=opt)
        log("plaintext NBD_OPT_%s -> %s" % (name, rep_name(t)))
        check(t == REP_ERR_TLS_REQD, "plaintext NBD_OPT_%s answered %s, want ERR_TLS_REQD"
              % (name, rep_name(t)))
    t = c.option(OPT_LIST)[-1].type
    check(t == REP_ERR_TLS_REQD, "plaintext NBD_OPT_LIST answered %s" % rep_name(t))
    t = c.option(OPT_STRUCTURED_REPLY)[-1].type
    check(t == REP_ERR_TLS_REQD, "plaintext STRUCTURED_REPLY answered %s" % rep_name(t))
    c.close()
    _, out, _ = nbdinfo(tls_uri(srv, ctx.ca_only))
    check(json.loads(out).get("TLS") is True, "nbds:// against --tls=require")


@R.case
def tls_require_raw_starttls(ctx):
    # STARTTLS by hand, then TLS with Python's ssl module, then GO and I/O.
    srv = server(ctx, "require")
    c = RawNbd(srv.port)
    check(c.go("default") == REP_ERR_TLS_REQD, "GO before STARTTLS was not refused")
    replies = c.option(OPT_STARTTLS)
    check(replies[-1].type == REP_ACK, "STARTTLS answered %s" % rep_name(replies[-1].type))
    sc = ssl.create_default_context(cafile=os.path.join(ctx.pki, "ca-cert.pem"))
    sc.check_hostname = True
    c.sock = sc.wrap_socket(c.sock, server_hostname="127.0.0.1")
    log("TLS established: %s %s" % (c.sock.version(), c.sock.cipher()[0]))
    c.go_ok("default")
    check(c.size == SIZE, "size over raw TLS: %s" % c.size)
    data = pattern(11, 128 * 1024)
    check(c.write(8 * MiB, data) == 0, "write over raw TLS failed")
    err, back = c.read(8 * MiB, len(data))
    check(err == 0 and back == data, "read-back over raw TLS")
    err, _ = c.request(77, 0, 0, cookie=99)
    check(err == 22, "unknown command over TLS answered %d" % err)
    check(c.read(0, 4096)[0] == 0, "read after the error over TLS")
    c.close()


@R.case
def tls_client_certificates(ctx):
    srv = server(ctx, "require", ca=True)
    _, out, _ = nbdinfo(tls_uri(srv, ctx.with_cert))
    check(json.loads(out).get("TLS") is True, "with a client certificate")
    rc, out, err = nbdinfo(tls_uri(srv, ctx.ca_only), check_rc=False)
    log("without a client certificate: exit %d: %s" % (rc, err.strip()[:300]))
    check(rc != 0, "--tls-ca set, yet a client without a certificate connected")
    check(srv.alive(), "server died")


@R.case
def tls_servers_stop_cleanly(ctx):
    started = [k for k in ("on", "req", "mtls") if getattr(ctx, k) is not None]
    if not started:
        raise Skip("no TLS server was started")
    for key in started:
        rc = getattr(ctx, key).stop()
        check(rc == 0, "TLS server '%s' exit status after SIGTERM: %s" % (key, rc))


if __name__ == "__main__":
    sys.exit(R.main(setup))
