#!/usr/bin/env python3
"""proxy_bench — what does smtpgate in the path cost?

Measures, in one run and side by side, Postfix's smtp-source sending to
Postfix's smtp-sink directly ("direct") and through `smtpgate proxy`
("proxy"), for three scenarios (1 session x 2 KB, 50 sessions x 2 KB,
20 sessions x 100 KB), with the contrib rule set loaded, each both with one
SMTP session per message (smtp-source's default) and over persistent
sessions (smtp-source -d). Direct and proxy rounds alternate (the order
flips every round); the report gives medians.

For every round it records messages/s and the CPU time per message of each
process: smtp-source (wait4() rusage, it is our child and short-lived),
smtp-sink and smtpgate (utime+stime deltas from /proc/PID/stat over the
round). A round counts only if smtp-source exited 0 and smtp-sink's own
counter (-c) grew by exactly the number of messages sent.

Then it measures smtpgate's memory per idle session: a fresh smtpgate, N
client sockets that read the banner and stay silent (spread over 127.0.0.x
source addresses to stay under the per-IP connection limit), VmRSS before
and after.

Everything runs on 127.0.0.0/8, is bounded in count and time (--timeout),
and every process it starts is killed on exit, Ctrl-C or SIGTERM.

  proxy_bench.py --smtpgate build-bench/cli/smtpgate          # the full run (~2.5 min)
  proxy_bench.py --smtpgate ... --quick                       # ctest smoke (seconds)

Exit status: 0 when every run delivered every message (throughput is never
asserted), 1 when a run failed, 77 when smtp-source/smtp-sink are missing.
See BENCHMARKS.md, section "SMTP proxy".
"""

import argparse
import ipaddress
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
SENDER = "from@example.org"
RCPT = "to@example.com"  # in contrib/lists/ourdomains: no relay-attempt monitor line per RCPT

# (name, sessions, message bytes, messages per round: full, quick)
SCENARIOS = [
    ("1 session x 2 KB", 1, 2048, 6000, 200),
    ("50 sessions x 2 KB", 50, 2048, 30000, 300),
    ("20 sessions x 100 KB", 20, 102400, 8000, 100),
]


class BenchError(Exception):
    pass


class UnknownKey(BenchError):
    """The smtpgate under test does not know a [proxy] key we tried."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Processes


class Children:
    """Every process we start, so that one place kills them all."""

    def __init__(self):
        self.procs = []

    def add(self, proc):
        self.procs = [p for p in self.procs if p.returncode is None]
        self.procs.append(proc)
        return proc

    def stop(self, proc, grace=3.0):
        if proc.returncode is not None:
            return
        try:
            proc.terminate()
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except (ChildProcessError, ProcessLookupError):
            pass

    def stop_all(self):
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception as e:  # keep cleaning up
                log(f"proxy_bench: could not stop pid {proc.pid}: {e}")


def cpu_seconds(pid):
    """utime+stime of a whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def listening_ports(pid):
    """TCP ports the process listens on (its socket inodes in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                ports.append(int(parts[1].split(":")[1], 16))
    return ports


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """smtp-sink on 127.0.0.1, port chosen by the kernel (smtp-sink sets
    SO_REUSEPORT, so a fixed port could silently be shared with someone
    else's sink).

    Counting: -c writes "sess=N quit=N mesg=N\\r" after every event, but into
    a stdio-like buffer that reaches the file only when it is full (and is
    lost on SIGTERM). A pty would flush every line, but costs the sink about
    a quarter more CPU per message and the direct run a third of its
    throughput here, so the counters go to a file and are made to flush after
    each round, outside the timed part: `settle()` opens sessions that only
    say QUIT (two events each) until the file grows. What the file then shows
    last was written after the round ended, so its `mesg` is final."""

    PATTERN = re.compile(rb"sess=(\d+) quit=\d+ mesg=(\d+)\r")

    def __init__(self, children, workdir):
        argv = [shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # smtp-sink refuses to run as root without -u
        argv += ["-c", "-m", "2048", "-t", "60", "127.0.0.1:0", "2048"]
        self.err_path = os.path.join(workdir, "smtp-sink.err")
        self.counter_path = os.path.join(workdir, "smtp-sink.counters")
        with open(self.err_path, "wb") as err, open(self.counter_path, "wb") as out:
            self.proc = children.add(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                                      stderr=err, close_fds=True))
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"smtp-sink exited: {self._errors()}")
            ports = listening_ports(self.proc.pid)
            if ports:
                self.port = ports[0]
                break
            if time.monotonic() > deadline:
                raise BenchError("smtp-sink did not listen within 10 s")
            time.sleep(0.05)

    def _errors(self):
        with open(self.err_path, errors="replace") as f:
            return f.read().strip()[-500:]

    def _flushed(self):
        """(file size, last complete `mesg` counter in the file)."""
        with open(self.counter_path, "rb") as f:
            data = f.read()
        matches = self.PATTERN.findall(data[-4096:]) or self.PATTERN.findall(data)
        return len(data), int(matches[-1][1]) if matches else 0

    def _quit_session(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"QUIT\r\n")
            f.readline()

    def settle(self, timeout=15):
        """The final message count, once every message so far has arrived."""
        size0, _ = self._flushed()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _ in range(20):
                self._quit_session()
            size, count = self._flushed()
            if size != size0:
                # Wait for the QUIT sessions' own events to be complete too.
                return count
        raise BenchError("smtp-sink's counters did not flush")

    def close(self, children):
        children.stop(self.proc)


class LocalDns:
    """unbound on 127.0.0.1 that answers every name itself (a static root
    zone: NXDOMAIN), so the contrib rules' DNS facts (DNSBL, PTR, SPF) cost a
    real lookup on the first session and a warm-cache answer after that,
    without the benchmark depending on, or querying, the internet.
    `local_data`: records in zone-file syntax ("name. TXT \"...\"") that it
    serves from that static root zone (auth_bench.py's test domain)."""

    def __init__(self, children, workdir, local_data=()):
        self.port = free_port()
        config = os.path.join(workdir, "unbound.conf")
        with open(config, "w") as f:
            f.write("server:\n"
                    "  interface: 127.0.0.1\n"
                    f"  port: {self.port}\n"
                    "  do-daemonize: no\n"
                    '  chroot: ""\n'
                    '  username: ""\n'
                    f'  directory: "{workdir}"\n'
                    '  pidfile: ""\n'
                    "  use-syslog: no\n"
                    "  do-not-query-localhost: no\n"
                    '  local-zone: "." static\n'
                    + "".join(f"  local-data: '{record}'\n" for record in local_data))
        self.err_path = os.path.join(workdir, "unbound.err")
        with open(self.err_path, "wb") as err:
            self.proc = children.add(subprocess.Popen(
                [shutil.which("unbound") or "/usr/sbin/unbound", "-d", "-c", config],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, close_fds=True))
        deadline = time.monotonic() + 10
        while self.port not in listening_ports(self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.err_path, "rb") as f:
                    raise BenchError(f"unbound did not start: {f.read().decode(errors='replace')}")
            time.sleep(0.05)


class Gate:
    """One `smtpgate proxy` with a generated config."""

    def __init__(self, children, smtpgate, workdir, name, sink_port, rules_glob, threads=0,
                 proxy_keys=(), dns_port=None):
        self.log_path = os.path.join(workdir, f"{name}-decisions.jsonl")
        self.err_path = os.path.join(workdir, f"{name}.err")
        for attempt in range(5):
            self.port = free_port()
            config = os.path.join(workdir, f"{name}.toml")
            with open(config, "w") as f:
                f.write(
                    "# written by tests/bench/proxy_bench.py\n"
                    "[proxy]\n"
                    f'listen = ["127.0.0.1:{self.port}"]\n'
                    f'backend = "127.0.0.1:{sink_port}"\n'
                    'hostname = "proxy.bench.test"\n'
                    "xclient = true\n"
                    + "".join(f"{line}\n" for line in proxy_keys) +
                    "[rules]\n"
                    f"files = [{json.dumps(rules_glob)}]\n"
                    'mode = "enforce"\n'
                    "[log]\n"
                    f"decisions = {json.dumps(self.log_path)}\n"
                    + (f'[dns]\nservers = ["127.0.0.1:{dns_port}"]\n' if dns_port else ""))
            with open(self.err_path, "wb") as err:
                self.proc = children.add(subprocess.Popen(
                    [smtpgate, "proxy", "-c", config]
                    + (["--threads", str(threads)] if threads else []), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err, close_fds=True))
            want = f"smtpgate: listening on 127.0.0.1:{self.port}"
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                text = self.errors()
                if want in text and "proxy ready" in text:
                    break
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            if self.proc.poll() is None and want in self.errors():
                # The capability probe must have reached the sink before the
                # first client, or EHLO would advertise the proxy's defaults.
                time.sleep(0.3)
                if "backend probe failed" in self.errors():
                    raise BenchError(f"smtpgate cannot reach smtp-sink: {self.errors()}")
                return
            children.stop(self.proc)
            if "cannot listen" not in self.errors():
                if proxy_keys and "unknown" in self.errors().lower():
                    raise UnknownKey(self.errors())
                raise BenchError(f"smtpgate did not start: {self.errors()}")
            log(f"proxy_bench: port {self.port} taken, trying another")
        raise BenchError("smtpgate: no free port after 5 tries")

    def errors(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def deliveries(self):
        if not os.path.exists(self.log_path):
            return 0
        with open(self.log_path, "rb") as f:
            return sum(1 for line in f if b'"action":"deliver"' in line)


def prepare_rules(workdir, shipped):
    """The contrib rule set. `shipped`: contrib/rules/*.rules as is. Otherwise
    a copy of contrib/rules and contrib/lists whose office list no longer
    holds the loopback networks: the shipped 10-connect.rules accepts
    @office clients at connect, which ends rule evaluation for the session,
    and every client of this benchmark is on 127.0.0.0/8."""
    contrib = os.path.join(REPO, "contrib")
    if shipped:
        return os.path.join(contrib, "rules", "*.rules"), []
    copy = os.path.join(workdir, "contrib")
    shutil.copytree(os.path.join(contrib, "rules"), os.path.join(copy, "rules"))
    shutil.copytree(os.path.join(contrib, "lists"), os.path.join(copy, "lists"))
    office = os.path.join(copy, "lists", "office.cidr")
    loopbacks = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    kept, dropped = [], []
    with open(office) as f:
        for line in f:
            word = line.split("#", 1)[0].strip()
            try:
                net = ipaddress.ip_network(word, strict=False) if word else None
            except ValueError:
                net = None
            if net is not None and any(net.version == lb.version and net.overlaps(lb)
                                       for lb in loopbacks):
                dropped.append(word)
            else:
                kept.append(line)
    with open(office, "w") as f:
        f.writelines(kept)
    return os.path.join(copy, "rules", "*.rules"), dropped


# ---------------------------------------------------------------------------
# One round


def run_source(children, port, sessions, count, size, reuse, timeout, sender=SENDER,
               message_file=None):
    """smtp-source to 127.0.0.1:port; returns (exit status, wall s, CPU s, stderr).
    `message_file`: send that file (LF line ends; smtp-source -F dot-stuffs
    it and ends every line with CRLF) instead of `size` bytes of its own."""
    argv = [shutil.which("smtp-source") or "/usr/sbin/smtp-source", "-s", str(sessions),
            "-m", str(count)]
    argv += ["-F", message_file] if message_file else ["-l", str(size)]
    argv += ["-f", sender, "-t", RCPT]
    if reuse:
        argv.append("-d")
    argv.append(f"127.0.0.1:{port}")
    result = {}
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = children.add(subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err, close_fds=True))

        def reap():
            _, status, usage = os.wait4(proc.pid, 0)
            result["wall"] = time.perf_counter() - t0
            result["status"] = os.waitstatus_to_exitcode(status)
            result["cpu"] = usage.ru_utime + usage.ru_stime

        waiter = threading.Thread(target=reap, daemon=True)
        waiter.start()
        waiter.join(timeout)
        if waiter.is_alive():
            proc.kill()
            waiter.join()
            proc.returncode = -9
            raise BenchError(f"smtp-source took more than {timeout} s: {' '.join(argv)}")
        proc.returncode = result["status"]  # reaped by wait4; keep Popen from waiting again
        err.seek(0)
        stderr = err.read().decode(errors="replace").strip()
    return result["status"], result["wall"], result["cpu"], stderr


def one_round(children, mode, scenario, count, sink, gate, reuse, timeout):
    name, sessions, size = scenario[0], scenario[1], scenario[2]
    connections = "reuse" if reuse else "per-message"
    port = gate.port if mode == "proxy" else sink.port
    m0 = sink.settle()
    sink0 = cpu_seconds(sink.proc.pid)
    gate0 = cpu_seconds(gate.proc.pid) if mode == "proxy" else 0.0
    logged0 = gate.deliveries() if mode == "proxy" else 0
    status, wall, source_cpu, stderr = run_source(children, port, sessions, count, size, reuse,
                                                  timeout)
    sink_cpu = cpu_seconds(sink.proc.pid) - sink0
    gate_cpu = cpu_seconds(gate.proc.pid) - gate0 if mode == "proxy" else None
    delivered = sink.settle() - m0
    r = {
        "scenario": name, "connections": connections, "mode": mode, "messages": count, "delivered": delivered,
        "source_status": status, "seconds": wall, "msgs_per_s": count / wall,
        "cpu_ms_per_msg": {
            "smtp-source": 1000 * source_cpu / count,
            "smtp-sink": 1000 * sink_cpu / count,
        },
    }
    if mode == "proxy":
        r["cpu_ms_per_msg"]["smtpgate"] = 1000 * gate_cpu / count
        r["decision_log_deliveries"] = gate.deliveries() - logged0
    ok = status == 0 and delivered == count
    if mode == "proxy":
        ok = ok and r["decision_log_deliveries"] == count
    r["ok"] = ok
    if not ok:
        r["error"] = (f"smtp-source exit {status}, sink counted {delivered} of {count}"
                      + (f", decision log {r.get('decision_log_deliveries')}"
                         if mode == "proxy" else "")
                      + (f": {stderr[-300:]}" if stderr else ""))
    return r


# ---------------------------------------------------------------------------
# Idle sessions


def idle_sessions(children, smtpgate, workdir, sink, rules_glob, total, per_ip, threads,
                  proxy_keys, dns_port):
    """Opens `total` silent client connections to a fresh smtpgate; returns
    RSS figures. Source addresses 127.0.0.2, .3, ... take `per_ip` each."""
    need = total + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        new_soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if hard != resource.RLIM_INFINITY and hard < need and os.geteuid() == 0:
            hard = new_soft = need
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        soft = new_soft
    if soft < need:
        log(f"proxy_bench: fd limit {soft}, opening only {soft - 256} idle sessions")
        total = max(0, soft - 256)
    # The fd limit is inherited by smtpgate, which needs one fd per session.
    # `max_connections` (default 1000) must allow them all; a build that
    # does not know the key yet admits only its default.
    key = f"max_connections = {total + 100}"
    try:
        gate = Gate(children, smtpgate, workdir, "idle", sink.port, rules_glob, threads,
                    list(proxy_keys) + [key], dns_port)
    except UnknownKey:
        key = None
        log("proxy_bench: this smtpgate has no [proxy] max_connections; its default applies")
        gate = Gate(children, smtpgate, workdir, "idle", sink.port, rules_glob, threads,
                    proxy_keys, dns_port)
    time.sleep(0.5)
    before = vm_rss_kib(gate.proc.pid)
    socks, refused, checkpoints = [], {}, []
    addresses = (total + per_ip - 1) // per_ip
    if addresses > 250:
        raise BenchError("too many idle sessions for 127.0.0.2-127.0.0.251")
    t0 = time.monotonic()
    for i in range(total):
        ip = f"127.0.0.{2 + i // per_ip}"
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(10)
            s.bind((ip, 0))
            s.connect(("127.0.0.1", gate.port))
            banner = b""
            while not banner.endswith(b"\n"):
                chunk = s.recv(512)
                if not chunk:
                    break
                banner += chunk
        except OSError as e:
            s.close()
            refused[str(e)] = refused.get(str(e), 0) + 1
            continue
        code = banner[:3].decode(errors="replace") or "closed"
        if code == "220":
            socks.append(s)
        else:
            s.close()
            refused[code] = refused.get(code, 0) + 1
        if (i + 1) % max(1, total // 10) == 0:
            checkpoints.append((i + 1, len(socks), vm_rss_kib(gate.proc.pid)))
    open_seconds = time.monotonic() - t0
    time.sleep(0.5)
    after = vm_rss_kib(gate.proc.pid)
    admitted = len(socks)
    for s in socks:
        s.close()
    time.sleep(1.0)
    after_close = vm_rss_kib(gate.proc.pid)
    children.stop(gate.proc)
    return {
        "attempted": total, "admitted": admitted, "refused": refused, "config_key": key,
        "source_addresses": f"127.0.0.2-127.0.0.{1 + addresses}", "per_ip": per_ip,
        "rss_before_kib": before, "rss_after_kib": after, "rss_after_close_kib": after_close,
        "kib_per_session": (after - before) / admitted if admitted else None,
        "checkpoints": checkpoints, "open_seconds": open_seconds,
    }


# ---------------------------------------------------------------------------
# Report


def median(values):
    return statistics.median(values) if values else float("nan")


def summarise(results):
    table = []
    for connections, (name, *_) in [(c, s) for c in ("per-message", "reuse") for s in SCENARIOS]:
        mine = [r for r in results if r["scenario"] == name and r["connections"] == connections]
        if not mine:
            continue
        direct = [r for r in mine if r["mode"] == "direct" and r["ok"]]
        proxy = [r for r in mine if r["mode"] == "proxy" and r["ok"]]
        failures = [f"{r['mode']} round {r['round']}: {r['error']}" for r in mine if not r["ok"]]

        def cpu(rs, proc):
            return median([r["cpu_ms_per_msg"][proc] for r in rs])

        row = {
            "scenario": name,
            "connections": connections,
            "rounds": [len(direct), len(proxy)],
            "failures": failures,
            "direct_msgs_per_s": median([r["msgs_per_s"] for r in direct]),
            "proxy_msgs_per_s": median([r["msgs_per_s"] for r in proxy]),
            "direct_range": [min((r["msgs_per_s"] for r in direct), default=None),
                             max((r["msgs_per_s"] for r in direct), default=None)],
            "proxy_range": [min((r["msgs_per_s"] for r in proxy), default=None),
                            max((r["msgs_per_s"] for r in proxy), default=None)],
            "direct_cpu": {"smtp-sink": cpu(direct, "smtp-sink"),
                           "smtp-source": cpu(direct, "smtp-source")},
            "proxy_cpu": {"smtpgate": cpu(proxy, "smtpgate"), "smtp-sink": cpu(proxy, "smtp-sink"),
                          "smtp-source": cpu(proxy, "smtp-source")},
        }
        row["ratio"] = (row["proxy_msgs_per_s"] / row["direct_msgs_per_s"]
                        if direct and proxy else float("nan"))
        # Per round, smtpgate's CPU against sink+source of the same round.
        row["gate_vs_sink_source"] = median([
            r["cpu_ms_per_msg"]["smtpgate"] /
            (r["cpu_ms_per_msg"]["smtp-sink"] + r["cpu_ms_per_msg"]["smtp-source"])
            for r in proxy if r["cpu_ms_per_msg"]["smtp-sink"] + r["cpu_ms_per_msg"]["smtp-source"] > 0
        ])
        # The same against the direct run's sink and source: a lean C server
        # and client doing the same messages, each connection set up and torn
        # down as smtpgate's client side does. (The proxied run's sink may do
        # less: smtpgate keeps its backend connections between sessions.)
        direct_pair = (row["direct_cpu"]["smtp-sink"] or 0) + (row["direct_cpu"]["smtp-source"] or 0)
        row["gate_vs_direct_sink_source"] = (row["proxy_cpu"]["smtpgate"] / direct_pair
                                             if proxy and direct_pair > 0 else float("nan"))
        table.append(row)
    return table


def missing_tool(bench, tools=("smtp-source", "smtp-sink", "unbound")):
    """True (said on stderr) if one of `tools` is not installed."""
    for tool in tools:
        if not (shutil.which(tool) or os.access(f"/usr/sbin/{tool}", os.X_OK)):
            log(f"{bench}: SKIP: {tool} not installed (Debian packages postfix, unbound)")
            return True
    return False


def guard_run(timeout):
    """SIGTERM/SIGINT/SIGHUP end the run as SystemExit, and SIGALRM after
    `timeout` s as BenchError, so the caller's finally kills every child."""
    def on_signal(signo, _frame):
        raise SystemExit(128 + signo)

    def on_alarm(_signo, _frame):
        raise BenchError(f"the whole run took more than {timeout:.0f} s (--timeout)")

    for signo in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signo, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(timeout))


def add_run_arguments(ap, default_timeout):
    """--json, --keep and --timeout, the same in every benchmark."""
    ap.add_argument("--json", help="write every round and the summary to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--timeout", type=float, help="stop everything after this many seconds "
                    f"(default {default_timeout}; quick 120)")


def chosen_scenarios(scenarios, text):
    """The scenarios --scenarios names (1-based, comma-separated), or all of them."""
    return [scenarios[int(i) - 1] for i in text.split(",")] if text else scenarios


def clean_up(children, workdir, keep, name):
    """Ends the --timeout alarm and every child; removes the work directory
    unless --keep."""
    signal.alarm(0)
    children.stop_all()
    if keep:
        log(f"{name}: work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def fmt(value, spec):
    return "n/a" if value is None or value != value else format(value, spec)


def print_report(table, idle, meta):
    out = sys.stdout
    print(f"\nsmtpgate proxy benchmark: {meta['cpu']} x {meta['nproc']}, "
          f"rounds {meta['rounds']}, smtpgate threads {meta['threads']}, rules {meta['rules']}"
          + "".join(f", [proxy] {k}" for k in meta["proxy_set"]) + ", "
          f"load avg {meta['load_before']} -> {meta['load_after']}", file=out)
    labels = {"per-message": "one SMTP session per message (smtp-source default)",
              "reuse": "messages over persistent sessions (smtp-source -d)"}
    for connections in ("per-message", "reuse"):
        rows = [row for row in table if row["connections"] == connections]
        if not rows:
            continue
        print(f"\n{labels[connections]}\n", file=out)
        print("| scenario | direct msgs/s | proxy msgs/s | ratio | direct CPU ms/msg: sink / source "
              "| proxy CPU ms/msg: smtpgate / sink / source | smtpgate / (sink+source) "
              "| smtpgate / direct (sink+source) |", file=out)
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", file=out)
        for row in rows:
            d, p = row["direct_cpu"], row["proxy_cpu"]
            print(f"| {row['scenario']} | {fmt(row['direct_msgs_per_s'], '.0f')} "
                  f"| {fmt(row['proxy_msgs_per_s'], '.0f')} | {fmt(row['ratio'], '.2f')} "
                  f"| {fmt(d['smtp-sink'], '.3f')} / {fmt(d['smtp-source'], '.3f')} "
                  f"| {fmt(p['smtpgate'], '.3f')} / {fmt(p['smtp-sink'], '.3f')} / "
                  f"{fmt(p['smtp-source'], '.3f')} | {fmt(row['gate_vs_sink_source'], '.2f')} "
                  f"| {fmt(row['gate_vs_direct_sink_source'], '.2f')} |", file=out)
        for row in rows:
            for failure in row["failures"]:
                print(f"  FAILED {row['scenario']}, {failure}", file=out)
    if idle:
        kib = idle["kib_per_session"]
        print(f"\nidle sessions: {idle['admitted']} of {idle['attempted']} admitted "
              f"(refused: {idle['refused'] or 'none'}), VmRSS {idle['rss_before_kib']} -> "
              f"{idle['rss_after_kib']} KiB = "
              + (f"{kib:.1f} KiB per idle session" if kib is not None else "n/a")
              + f"; after closing them {idle['rss_after_close_kib']} KiB", file=out)
        print("  checkpoints (attempted, admitted, VmRSS KiB): "
              + ", ".join(f"({a}, {b}, {c})" for a, b, c in idle["checkpoints"]), file=out)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def find_smtpgate(given):
    if given:
        return os.path.abspath(given)
    for build in ("build-bench", "build-perf", "build"):
        path = os.path.join(REPO, build, "cli", "smtpgate")
        if os.access(path, os.X_OK):
            return path
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smtpgate", help="the smtpgate executable (default: build-bench/, build-perf/ "
                    "or build/ under the repository)")
    ap.add_argument("--quick", action="store_true",
                    help="a few hundred messages, one round, 300 idle sessions: proves it runs")
    ap.add_argument("--rounds", type=int, help="rounds per mode and scenario (default 3; quick 1)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the message counts")
    ap.add_argument("--scenarios", help="comma-separated indexes into the scenario list (1-3)")
    ap.add_argument("--idle", type=int, help="idle sessions to open (default 5000; quick 300; 0 skips)")
    ap.add_argument("--per-ip", type=int, default=40,
                    help="idle sessions per source address (smtpgate admits 50 per client IP)")
    ap.add_argument("--connections", choices=("per-message", "reuse", "both"), default="both",
                    help="per-message: smtp-source's default, a new SMTP session per message; "
                         "reuse: smtp-source -d, each session sends message after message; "
                         "both (default): the scenarios in each way")
    ap.add_argument("--shipped-rules", action="store_true",
                    help="contrib/rules exactly as shipped (loopback is in @office, so every "
                         "session is accepted at connect and no later rule runs)")
    ap.add_argument("--threads", type=int, default=0,
                    help="smtpgate proxy --threads (default: smtpgate's own, one per core)")
    ap.add_argument("--proxy-set", action="append", default=[], metavar="'KEY = VALUE'",
                    help="an extra TOML line for smtpgate's [proxy] section, e.g. "
                         "'max_connections_per_ip = 100' (repeatable)")
    add_run_arguments(ap, 1200)
    args = ap.parse_args()

    rounds = args.rounds or (1 if args.quick else 3)
    idle_total = args.idle if args.idle is not None else (300 if args.quick else 5000)
    timeout = args.timeout or (120 if args.quick else 1200)
    scenarios = chosen_scenarios(SCENARIOS, args.scenarios)

    if missing_tool("proxy_bench"):
        return SKIP
    smtpgate = find_smtpgate(args.smtpgate)
    if not smtpgate or not os.access(smtpgate, os.X_OK):
        log("proxy_bench: no smtpgate executable; pass --smtpgate PATH")
        return 2

    children = Children()
    workdir = tempfile.mkdtemp(prefix="smtpgate-proxy-bench.")

    guard_run(timeout)

    results, idle, failed = [], None, False
    meta = {
        "nproc": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release(),
        "rounds": rounds, "connections": args.connections, "quick": args.quick,
        "rules": "contrib as shipped" if args.shipped_rules else "contrib, loopback not in @office",
        "smtpgate": smtpgate, "threads": args.threads or "default", "proxy_set": args.proxy_set,
        "load_before": load_average(),
    }
    try:
        rules_glob, dropped = prepare_rules(workdir, args.shipped_rules)
        meta["rules_glob"], meta["office_dropped"] = rules_glob, dropped
        sink = Sink(children, workdir)
        dns = LocalDns(children, workdir)
        gate = Gate(children, smtpgate, workdir, "bench", sink.port, rules_glob, args.threads,
                    args.proxy_set, dns.port)
        log(f"proxy_bench: smtp-sink on 127.0.0.1:{sink.port}, smtpgate on 127.0.0.1:{gate.port} "
            f"(pid {gate.proc.pid}), work dir {workdir}")
        run_timeout = 60 if args.quick else 300
        # Warm-up, not recorded: page cache, RE2's lazily built DFAs, malloc arenas.
        for mode in ("direct", "proxy"):
            w = one_round(children, mode, ("warm-up", 10, 2048), 200, sink, gate, False,
                          run_timeout)
            if not w["ok"]:
                raise BenchError(f"warm-up {mode}: {w['error']}")
        ways = ["per-message", "reuse"] if args.connections == "both" else [args.connections]
        for connections in ways:
            for scenario in scenarios:
                name, _, _, full, quick = scenario
                count = quick if args.quick else max(1, int(full * args.scale))
                for r in range(rounds):
                    for mode in (("direct", "proxy") if r % 2 == 0 else ("proxy", "direct")):
                        res = one_round(children, mode, scenario, count, sink, gate,
                                        connections == "reuse", run_timeout)
                        res["round"] = r + 1
                        results.append(res)
                        cpu = " ".join(f"{k} {v:.3f}" for k, v in res["cpu_ms_per_msg"].items())
                        log(f"  {connections:11} {name:22} round {r + 1} {mode:6} "
                            + (f"{res['msgs_per_s']:8.0f} msgs/s ({count} in {res['seconds']:.2f} s)"
                               f"  CPU ms/msg: {cpu}" if res["ok"] else f"FAILED: {res['error']}"))
                        failed |= not res["ok"]
                        if not res["ok"] and gate.proc.poll() is None:
                            time.sleep(1)  # let the proxy's refused sessions wind down
        if gate.proc.poll() is not None:
            raise BenchError(f"smtpgate died during the run: {gate.errors()[-500:]}")
        children.stop(gate.proc)
        if idle_total > 0:
            log(f"proxy_bench: idle sessions: opening {idle_total}")
            idle = idle_sessions(children, smtpgate, workdir, sink, rules_glob, idle_total,
                                 args.per_ip, args.threads, args.proxy_set, dns.port)
            if idle["admitted"] == 0:
                failed = True
                log("proxy_bench: no idle session was admitted")
        sink.close(children)
    except BenchError as e:
        log(f"proxy_bench: FAILED: {e}")
        failed = True
    finally:
        clean_up(children, workdir, args.keep, "proxy_bench")

    meta["load_after"] = load_average()
    table = summarise(results)
    print_report(table, idle, meta)
    for row in table:
        if row["rounds"][0] == 0 or row["rounds"][1] == 0 or not row["ratio"] == row["ratio"]:
            failed = True
    if not table:
        failed = True
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "summary": table, "idle": idle, "rounds": results}, f, indent=1)
    print("\nproxy_bench: " + ("FAILED (see above)" if failed else
                               "OK: every run delivered every message"), file=sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
