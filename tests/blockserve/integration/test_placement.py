#!/usr/bin/python3
"""blockserve --cpus LIST: the workers run only on those CPUs, placed among them
(read back from the kernel: each worker thread's affinity and the CPU it last
ran on, /proc/PID/task/TID/status and stat), and serve; more workers than
CPUs share them, with one warning naming --workers; a worker kept off the CPUs
where the export's completions arrive is warned about, the fix naming --cpus. CPUs outside the
process's affinity are refused (tests/blockserve_config covers the message)."""

import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import MiB, RawNbd, Runner, Server, Skip, check, log, make_sparse  # noqa: E402

R = Runner(__doc__, budget=60)


def setup(ctx):
    make_sparse(ctx.path("p.img"), 16 * MiB)


def parse_cpus(text):
    out = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def pinned_threads(pid):
    """{tid: (allowed CPUs, CPU it last ran on)} for the threads pinned to one CPU
    (the workers, and any io_uring helper threads they started)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                status = f.read()
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue  # the thread went meanwhile
        allowed = parse_cpus(re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M).group(1))
        # Field 39 (processor); the name, field 2, may hold spaces: count after ')'.
        processor = int(stat[stat.rindex(")") + 2:].split()[36])
        if len(allowed) == 1:
            out[int(tid)] = (allowed, processor)
    return out


def need_cpus(*cpus):
    allowed = os.sched_getaffinity(0)
    if not set(cpus) <= allowed:
        raise Skip("needs CPUs %s; this process may use %s" % (sorted(cpus), sorted(allowed)))


def serve_and_check(ctx, server):
    c = RawNbd(server.port).go_ok("p")
    err, data = c.read(0, 4096)
    c.close()
    check(err == 0 and len(data) == 4096, "read through the placed worker: error %d" % err)


@R.case
def cpus_1_puts_the_worker_on_cpu_1_and_cpus_0_on_cpu_0(ctx):
    # Both: whichever CPU the placement would choose by itself (where the
    # file's device interrupts), one of the two runs go against it.
    need_cpus(0, 1)
    for cpu in (1, 0):
        s = Server(ctx, exports=[("p", ctx.path("p.img"), False)], workers=1,
                   extra=["--cpus", str(cpu)], name="bs-cpu%d" % cpu).start()
        serve_and_check(ctx, s)
        threads = pinned_threads(s.proc.pid)
        log("--cpus %d: threads pinned to one CPU: %s" % (cpu, threads))
        check(threads, "no thread of blockserve is pinned to one CPU")
        for tid, (allowed, processor) in threads.items():
            check(allowed == {cpu}, "thread %d may run on %s, not only CPU %d"
                  % (tid, sorted(allowed), cpu))
            check(processor == cpu, "thread %d last ran on CPU %d" % (tid, processor))
        log_text = s.log_text()
        check(re.search(r"placement: worker 0 on CPU %d\b.*\(chosen from CPUs %d\)" % (cpu, cpu),
                        log_text), "the log does not say where the worker runs:\n" + log_text)
        check("share CPUs" not in log_text, "a sharing warning with one worker:\n" + log_text)
        # A device whose completions arrive on some CPUs only (a virtio disk):
        # a worker kept off them by --cpus gets the warning, and its fix names
        # --cpus with those CPUs (not "outside the CPUs this process may use").
        m = re.search(r"completions local on CPUs (\S+)", log_text)
        if m and cpu not in parse_cpus(m.group(1)):
            want = "(--cpus %s, with --workers at most that many)" % m.group(1)
            check(log_text.count("cross-CPU wake-up") == 1 and want in log_text,
                  "expected one cross-CPU warning naming %s:\n%s" % (want, log_text))
            log("--cpus %d keeps the worker off CPUs %s: warned, fix %s" % (cpu, m.group(1), want))
        s.stop()


@R.case
def more_workers_than_cpus_share_them_with_one_warning(ctx):
    need_cpus(0, 1)
    s = Server(ctx, exports=[("p", ctx.path("p.img"), False)], workers=2,
               extra=["--cpus", "0"]).start()
    serve_and_check(ctx, s)
    threads = pinned_threads(s.proc.pid)
    log("threads pinned to one CPU: %s" % threads)
    check(len(threads) >= 2, "expected both workers pinned, got %s" % threads)
    check(all(a == {0} for a, _ in threads.values()), "a worker outside --cpus 0: %s" % threads)
    log_text = s.log_text()
    check(re.search(r"placement: worker 0 on CPU 0\b.*, worker 1 on CPU 0\b.*\(chosen from CPUs 0\)",
                    log_text), "the log does not say where the workers run:\n" + log_text)
    check(log_text.count("workers share CPUs; give --workers 1") == 1,
          "expected one warning naming --workers 1:\n" + log_text)
    s.stop()


if __name__ == "__main__":
    sys.exit(R.main(setup))
