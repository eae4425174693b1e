#!/usr/bin/env python3
"""milter_bench — what does `smtpgate milter` cost Postfix?

Measures, in one run and side by side, one private Postfix instance that
relays everything to Postfix's smtp-sink, fed by Postfix's smtp-source
through three smtpd listeners of that same instance:

  bare   no milter;
  inet   smtpd_milters = inet:127.0.0.1:PORT  (an `smtpgate milter` on TCP);
  unix   smtpd_milters = unix:/PATH           (a second `smtpgate milter` on a
         unix socket),

each with 1 and with 20 concurrent SMTP sessions (one session per message,
smtp-source's default), 2 KB messages, the contrib rule set loaded in both
milters and DNS answered by a local unbound. The three listeners take turns
within a round, in an order that rotates from round to round; the report
gives medians and each milter's ratio to bare Postfix.

For every round it records messages/s (messages over smtp-source's wall
time: Postfix has answered 250 to every message, so each was queued after
the milter said yes), then waits until Postfix's queue is empty
(end-to-end messages/s: messages over sending plus draining time; bare
Postfix accepts faster than it delivers and finishes its deliveries after
smtp-source is done, which the first figure does not count) and checks that
smtp-sink's counter (-c) grew by exactly the number of messages, and for
milter rounds that the milter's decision log gained one "deliver" line per
message. milter_default_action = tempfail, so a milter
that fails shows as missing messages, never as mail passing unchecked.
CPU per message: smtp-source (wait4() rusage), smtpgate (utime+stime of
all its threads from /proc/PID/stat) and all of Postfix (every process of
the master's process group, plus the master's reaped children), the last
two from the start of the round until the queue is empty.

Everything runs on 127.0.0.1 with ports the kernel or a bind test chose;
the Postfix instance has its own config, queue and data directories and
maillog file in a temp directory (as tests/support/postfix_instance.cpp
does it) and never touches a system Postfix or port 25. Postfix's master
needs root. Every process started here is stopped on exit, Ctrl-C or
SIGTERM (Postfix with `postfix stop`, then its process group if need be).

  milter_bench.py --smtpgate build-bench/cli/smtpgate          # the full run (~4 min)
  milter_bench.py --smtpgate ... --quick                       # ctest smoke (seconds)

Exit status: 0 when every round delivered every message (throughput is never
asserted), 1 when a round failed, 77 when Postfix, smtp-source, smtp-sink or
unbound are missing or we are not root. See BENCHMARKS.md, "Postfix milter".
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__/ in the source tree for the import below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import (  # noqa: E402  (the shared pieces of the proxy benchmark)
    add_run_arguments, chosen_scenarios, clean_up, fmt, guard_run, missing_tool,
    SKIP, BenchError, Children, LocalDns, Sink, cpu_model, cpu_seconds, find_smtpgate, free_port,
    listening_ports, load_average, median, prepare_rules, run_source)

CLK_TCK = os.sysconf("SC_CLK_TCK")
POSTFIX = "/usr/sbin/postfix"
MODES = ("bare", "inet", "unix")
MESSAGE_BYTES = 2048

# (name, sessions, messages per round: full, quick)
SCENARIOS = [
    ("1 session", 1, 200, 40),
    ("20 sessions", 20, 1200, 200),
]

# Every daemon unprivileged where Postfix allows it, none chrooted (a chroot
# would need copies of /etc files), no tlsmgr: as in
# tests/support/postfix_instance.cpp. The smtpd listeners come first.
MASTER_CF_TAIL = """
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def stat_fields(pid):
    """Fields of /proc/PID/stat after "(comm)": [0] is the state."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_group(pgid):
    """Live (non-zombie) pids of process group `pgid`."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = stat_fields(int(name))
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            pids.append(int(name))
    return pids


class Postfix:
    """A private Postfix 3.x: config, queue and data directory and maillog
    file under `root`, one smtpd listener per entry of `listeners`
    ({name: smtpd_milters value, "" for none}) on 127.0.0.1, relaying every
    message to [127.0.0.1]:sink_port. Needs root (the master does)."""

    def __init__(self, root, sink_port, listeners):
        self.root = root
        self.conf = os.path.join(root, "conf")
        self.queue = os.path.join(root, "queue")
        self.maillog = os.path.join(root, "maillog")
        self.master_pid = None
        os.makedirs(self.conf)
        os.makedirs(self.queue)
        settings = [
            ("compatibility_level", "3.6"),
            # Everything this instance writes stays under root; maillog_file
            # must be under maillog_file_prefixes or `postfix` refuses to run.
            ("queue_directory", self.queue),
            ("data_directory", os.path.join(root, "data")),
            ("maillog_file", self.maillog),
            ("maillog_file_prefixes", root),
            ("mail_owner", "postfix"),
            ("setgid_group", "postdrop"),
            ("myhostname", "postfix.bench.test"),
            ("myorigin", "$myhostname"),
            ("inet_interfaces", "127.0.0.1"),
            ("inet_protocols", "ipv4"),
            # Nothing local: every message is relayed to the sink.
            ("mydestination", ""),
            ("local_recipient_maps", ""),
            ("alias_maps", ""),
            ("alias_database", ""),
            ("relay_domains", ""),
            ("relayhost", f"[127.0.0.1]:{sink_port}"),
            ("default_transport", "smtp"),
            ("mynetworks", "127.0.0.0/8"),
            ("smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination"),
            ("smtpd_client_restrictions", ""),
            ("smtpd_banner", "$myhostname ESMTP"),
            ("smtpd_tls_security_level", "none"),
            ("smtp_tls_security_level", "none"),
            # No DNS on Postfix's side: no PTR lookup of the client (the
            # milter sees "unknown"), the relayhost is an address literal.
            ("smtpd_peername_lookup", "no"),
            ("smtp_host_lookup", "native"),
            ("smtp_dns_support_level", "disabled"),
            # Speed: no throttling of smtpd when the queue grows, no error
            # sleeps, enough smtpd processes (20 sessions x 3 listeners).
            ("in_flow_delay", "0s"),
            ("smtpd_error_sleep_time", "0s"),
            ("default_process_limit", "100"),
            ("smtpd_client_connection_count_limit", "0"),
            ("smtpd_client_connection_rate_limit", "0"),
            ("smtp_connect_timeout", "5s"),
            ("queue_run_delay", "1s"),
            ("minimal_backoff_time", "1s"),
            ("maximal_backoff_time", "2s"),
            ("biff", "no"),
            # The milter settings of contrib/postfix/main.cf.milter; each
            # listener sets its own smtpd_milters in master.cf.
            ("smtpd_milters", ""),
            ("non_smtpd_milters", ""),
            ("milter_default_action", "tempfail"),
            ("milter_protocol", "6"),
            ("milter_connect_timeout", "10s"),
            ("milter_command_timeout", "30s"),
            ("milter_content_timeout", "60s"),
        ]
        self.ports = {}
        master = ""
        for name, milters in listeners.items():
            self.ports[name] = free_port()
            master += (f"127.0.0.1:{self.ports[name]} inet n - n - - smtpd"
                       f" -o syslog_name=postfix/{name} -o smtpd_milters={milters}\n")
        self._write("main.cf", "# written by tests/bench/milter_bench.py\n"
                    + "".join(f"{k} = {v}\n" for k, v in settings))
        self._write("master.cf", master + MASTER_CF_TAIL)

    def _write(self, name, text):
        path = os.path.join(self.conf, name)
        with open(path, "w") as f:
            f.write(text)
        # Postfix rereads a config file until its mtime is over a second
        # old ("pausing to let ... cool down"): date the complete file back.
        past = time.time() - 60
        os.utime(path, (past, past))

    def _postfix(self, *args, check=True):
        proc = subprocess.run([POSTFIX, "-c", self.conf, *args], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        if check and proc.returncode != 0:
            raise BenchError(f"postfix {' '.join(args)} failed ({proc.returncode}): "
                             f"{proc.stdout.decode(errors='replace')}\n{self.log_tail()}")
        return proc

    def log_tail(self, n=20):
        try:
            with open(self.maillog, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def start(self):
        # `postfix check` creates the queue and data directories with the
        # owners and modes of postfix-files; quick-start tells `start` not to
        # repeat it.
        self._postfix("check")
        open(os.path.join(self.queue, "quick-start"), "w").close()
        self._postfix("start")
        pid_file = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with open(pid_file) as f:
                    self.master_pid = int(f.read().strip())
                if set(self.ports.values()) <= set(listening_ports(self.master_pid)):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        else:
            raise BenchError(f"Postfix's master did not listen on {self.ports}:\n{self.log_tail()}")
        for name, port in self.ports.items():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                banner = s.makefile("rb").readline()
                if not banner.startswith(b"220"):
                    raise BenchError(f"Postfix's {name} smtpd greeted with {banner!r}")
                s.sendall(b"QUIT\r\n")

    def queued(self):
        """Messages still in the queue (incoming, active, deferred, hold, maildrop)."""
        n = 0
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.queue, sub)):
                n += len(files)
        return n

    def deferred(self):
        return sum(len(files) for _, _, files in os.walk(os.path.join(self.queue, "deferred")))

    def cpu_seconds(self):
        """utime+stime of every live process of the master's group, plus
        the reaped children's time the master has collected."""
        total = 0
        for pid in process_group(self.master_pid):
            try:
                f = stat_fields(pid)
            except OSError:
                continue
            total += int(f[11]) + int(f[12])
            if pid == self.master_pid:
                total += int(f[13]) + int(f[14])
        return total / CLK_TCK

    def stop(self):
        if self.master_pid is None:
            self._postfix("stop", check=False)
            return
        pgid, self.master_pid = self.master_pid, None
        try:
            self._postfix("stop", check=False)
        except (subprocess.TimeoutExpired, OSError) as e:
            log(f"milter_bench: postfix stop: {e}")
        deadline = time.monotonic() + 10
        while process_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_group(pgid):
            # Only this instance's group: the master is a session leader, so
            # its pgid is its pid. Never by name: other masters may run.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Milter:
    """One `smtpgate milter` with a generated config; `socket_spec` in
    libmilter syntax (inet:PORT@127.0.0.1 or unix:/path)."""

    def __init__(self, children, smtpgate, workdir, name, rules_glob, dns_port):
        self.log_path = os.path.join(workdir, f"{name}-decisions.jsonl")
        self.err_path = os.path.join(workdir, f"{name}.err")
        self.name = name
        for attempt in range(5):
            if name == "unix":
                self.path = os.path.join(workdir, "milter.sock")
                socket_spec, self.postfix_spec = f"unix:{self.path}", f"unix:{self.path}"
            else:
                self.port = free_port()
                socket_spec = f"inet:{self.port}@127.0.0.1"
                self.postfix_spec = f"inet:127.0.0.1:{self.port}"
            config = os.path.join(workdir, f"{name}.toml")
            with open(config, "w") as f:
                f.write("# written by tests/bench/milter_bench.py\n"
                        "[milter]\n"
                        f"socket = {json.dumps(socket_spec)}\n"
                        "[rules]\n"
                        f"files = [{json.dumps(rules_glob)}]\n"
                        'mode = "enforce"\n'
                        "[log]\n"
                        f"decisions = {json.dumps(self.log_path)}\n"
                        f'[dns]\nservers = ["127.0.0.1:{dns_port}"]\n')
            with open(self.err_path, "wb") as err:
                self.proc = children.add(subprocess.Popen(
                    [smtpgate, "milter", "-c", config], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err, close_fds=True))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                if "smtpgate milter: listening on" in self.errors() and self._listening():
                    if name == "unix":
                        # smtpd runs as the postfix user: let it connect.
                        os.chmod(self.path, 0o666)
                    return
                time.sleep(0.05)
            children.stop(self.proc)
            if name == "unix" or "ddress already in use" not in self.errors():
                raise BenchError(f"smtpgate milter ({name}) did not start: {self.errors()}")
            log(f"milter_bench: port {self.port} taken, trying another")
        raise BenchError("smtpgate milter: no free port after 5 tries")

    def _listening(self):
        if self.name == "unix":
            return os.path.exists(self.path)
        return self.port in listening_ports(self.proc.pid)

    def errors(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def deliveries(self):
        if not os.path.exists(self.log_path):
            return 0
        with open(self.log_path, "rb") as f:
            return sum(1 for line in f if b'"action":"deliver"' in line)


# ---------------------------------------------------------------------------
# One round


def wait_drained(postfix, timeout):
    deadline = time.monotonic() + timeout
    while postfix.queued() > 0:
        if time.monotonic() > deadline:
            raise BenchError(f"Postfix's queue still holds {postfix.queued()} messages after "
                             f"{timeout:.0f} s ({postfix.deferred()} deferred):\n"
                             + postfix.log_tail())
        time.sleep(0.02)


def sink_count(sink, at_least, timeout=30):
    """smtp-sink's final message count, waiting up to `timeout` for it to
    reach `at_least` (the last deliveries' counter lines may be in flight)."""
    deadline = time.monotonic() + timeout
    while True:
        count = sink.settle()
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def one_round(children, mode, scenario, count, sink, postfix, milters, timeout):
    name, sessions = scenario[0], scenario[1]
    milter = milters.get(mode)
    m0 = sink.settle()
    pf0 = postfix.cpu_seconds()
    gate0 = cpu_seconds(milter.proc.pid) if milter else 0.0
    logged0 = milter.deliveries() if milter else 0
    status, wall, source_cpu, stderr = run_source(children, postfix.ports[mode], sessions, count,
                                                  MESSAGE_BYTES, False, timeout)
    gate_at_end = cpu_seconds(milter.proc.pid) if milter else 0.0
    t_end = time.perf_counter()
    error = None
    try:
        wait_drained(postfix, timeout)
    except BenchError as e:
        error = str(e)
    drain = time.perf_counter() - t_end
    pf_cpu = postfix.cpu_seconds() - pf0
    delivered = sink_count(sink, m0 + count) - m0
    r = {
        "scenario": name, "sessions": sessions, "mode": mode, "messages": count,
        "delivered": delivered, "source_status": status, "seconds": wall,
        "msgs_per_s": count / wall, "drain_seconds": drain,
        "end_to_end_msgs_per_s": count / (wall + drain),
        "cpu_ms_per_msg": {"smtp-source": 1000 * source_cpu / count,
                           "postfix": 1000 * pf_cpu / count},
    }
    if milter:
        r["cpu_ms_per_msg"]["smtpgate"] = 1000 * (gate_at_end - gate0) / count
        r["decision_log_deliveries"] = milter.deliveries() - logged0
    ok = status == 0 and delivered == count and error is None
    if milter:
        ok = ok and r["decision_log_deliveries"] == count
    r["ok"] = ok
    if not ok:
        r["error"] = (f"smtp-source exit {status}, sink counted {delivered} of {count}"
                      + (f", decision log {r['decision_log_deliveries']}" if milter else "")
                      + (f"; {error}" if error else "")
                      + (f": {stderr[-300:]}" if stderr else ""))
    return r


def round_order(r):
    """bare, inet, unix rotated by one each round: over three rounds each
    mode runs once first, once in the middle and once last."""
    k = r % len(MODES)
    return MODES[k:] + MODES[:k]


# ---------------------------------------------------------------------------
# Report


def summarise(results):
    table = []
    for name, sessions, *_ in SCENARIOS:
        mine = [r for r in results if r["scenario"] == name]
        if not mine:
            continue
        row = {"scenario": name, "sessions": sessions, "modes": {}, "failures": []}
        for mode in MODES:
            rs = [r for r in mine if r["mode"] == mode and r["ok"]]
            row["failures"] += [f"{mode} round {r['round']}: {r['error']}"
                                for r in mine if r["mode"] == mode and not r["ok"]]
            rates = [r["msgs_per_s"] for r in rs]
            row["modes"][mode] = {
                "rounds": len(rs),
                "msgs_per_s": median(rates),
                "range": [min(rates, default=None), max(rates, default=None)],
                "ms_per_msg_per_session": (1000 * sessions / median(rates)) if rates else None,
                "cpu_ms_per_msg": {p: median([r["cpu_ms_per_msg"][p] for r in rs])
                                   for p in (rs[0]["cpu_ms_per_msg"] if rs else {})},
                "drain_s": median([r["drain_seconds"] for r in rs]),
                "end_to_end_msgs_per_s": median([r["end_to_end_msgs_per_s"] for r in rs]),
            }
        for key, ratio in (("msgs_per_s", "ratio"), ("end_to_end_msgs_per_s", "end_to_end_ratio")):
            bare = row["modes"]["bare"][key]
            for mode in ("inet", "unix"):
                m = row["modes"][mode][key]
                row["modes"][mode][ratio] = m / bare if bare == bare and m == m else float("nan")
        table.append(row)
    return table


def print_report(table, meta):
    out = sys.stdout
    print(f"\nsmtpgate milter benchmark: {meta['cpu']} x {meta['nproc']}, rounds {meta['rounds']}, "
          f"{MESSAGE_BYTES} B messages, rules {meta['rules']}, "
          f"load avg {meta['load_before']} -> {meta['load_after']}\n", file=out)
    print("| sessions | bare msgs/s | inet milter msgs/s | ratio | unix milter msgs/s | ratio "
          "| smtpgate CPU ms/msg: inet / unix | Postfix CPU ms/msg: bare / inet / unix "
          "| smtp-source CPU ms/msg: bare / inet / unix |", file=out)
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", file=out)
    for row in table:
        b, i, u = (row["modes"][m] for m in MODES)

        def cpu(mode, proc):
            return fmt(mode["cpu_ms_per_msg"].get(proc), ".3f")

        print(f"| {row['sessions']} | {fmt(b['msgs_per_s'], '.0f')} "
              f"| {fmt(i['msgs_per_s'], '.0f')} | {fmt(i['ratio'], '.2f')} "
              f"| {fmt(u['msgs_per_s'], '.0f')} | {fmt(u['ratio'], '.2f')} "
              f"| {cpu(i, 'smtpgate')} / {cpu(u, 'smtpgate')} "
              f"| {cpu(b, 'postfix')} / {cpu(i, 'postfix')} / {cpu(u, 'postfix')} "
              f"| {cpu(b, 'smtp-source')} / {cpu(i, 'smtp-source')} / {cpu(u, 'smtp-source')} |",
              file=out)
    print("\nEnd to end: messages / (sending time + time until Postfix's queue was empty). "
          "Bare Postfix accepts faster than it delivers and finishes its deliveries after "
          "smtp-source is done; this counts them.\n", file=out)
    print("| sessions | bare msgs/s | inet milter msgs/s | ratio | unix milter msgs/s | ratio |",
          file=out)
    print("| ---: | ---: | ---: | ---: | ---: | ---: |", file=out)
    for row in table:
        b, i, u = (row["modes"][m] for m in MODES)
        print(f"| {row['sessions']} | {fmt(b['end_to_end_msgs_per_s'], '.0f')} "
              f"| {fmt(i['end_to_end_msgs_per_s'], '.0f')} | {fmt(i['end_to_end_ratio'], '.2f')} "
              f"| {fmt(u['end_to_end_msgs_per_s'], '.0f')} | {fmt(u['end_to_end_ratio'], '.2f')} |",
              file=out)
    print("\nmin-max msgs/s per mode, and wall ms per message per session (median):", file=out)
    for row in table:
        parts = []
        for m in MODES:
            lo, hi = row["modes"][m]["range"]
            ms = row["modes"][m]["ms_per_msg_per_session"]
            parts.append(f"{m} {fmt(lo, '.0f')}-{fmt(hi, '.0f')} ({fmt(ms, '.2f')} ms)")
        print(f"  {row['scenario']:12} " + "  ".join(parts), file=out)
        for failure in row["failures"]:
            print(f"  FAILED {row['scenario']}, {failure}", file=out)
    for row in table:
        inet, unix = (row["modes"][m]["ms_per_msg_per_session"] for m in ("inet", "unix"))
        if row["sessions"] == 1 and inet and unix and inet - unix > 20:
            print(f"\nnote: over inet each message took {inet - unix:.0f} ms longer than over "
                  "the unix socket: the signature of Nagle's algorithm meeting a delayed ACK "
                  "on the milter connection (BENCHMARKS.md, \"Postfix milter\")", file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smtpgate", help="the smtpgate executable (default: build-bench/, "
                    "build-perf/ or build/ under the repository)")
    ap.add_argument("--quick", action="store_true",
                    help="a few dozen/hundred messages, one round: proves it runs")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default 5; quick 1)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the message counts")
    ap.add_argument("--scenarios", help="comma-separated indexes into the scenario list "
                    "(1: 1 session, 2: 20 sessions)")
    ap.add_argument("--shipped-rules", action="store_true",
                    help="contrib/rules exactly as shipped (loopback is in @office, so every "
                         "session is accepted at connect and no later rule runs)")
    add_run_arguments(ap, 900)
    args = ap.parse_args()

    rounds = args.rounds or (1 if args.quick else 5)
    timeout = args.timeout or (120 if args.quick else 900)
    scenarios = chosen_scenarios(SCENARIOS, args.scenarios)

    if missing_tool("milter_bench", ("postfix", "smtp-source", "smtp-sink", "unbound")):
        return SKIP
    if os.geteuid() != 0:
        log("milter_bench: SKIP: a private Postfix instance needs root (its master does)")
        return SKIP
    smtpgate = find_smtpgate(args.smtpgate)
    if not smtpgate or not os.access(smtpgate, os.X_OK):
        log("milter_bench: no smtpgate executable; pass --smtpgate PATH")
        return 2

    children = Children()
    workdir = tempfile.mkdtemp(prefix="smtpgate-milter-bench.")
    # The postfix user must reach the queue and the unix milter socket.
    os.chmod(workdir, 0o755)
    postfix = None

    guard_run(timeout)

    results, failed = [], False
    meta = {
        "nproc": os.cpu_count(), "cpu": cpu_model(), "kernel": os.uname().release,
        "rounds": rounds, "quick": args.quick, "message_bytes": MESSAGE_BYTES,
        "rules": "contrib as shipped" if args.shipped_rules else "contrib, loopback not in @office",
        "smtpgate": smtpgate, "load_before": load_average(),
        "postfix": subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True,
                                  text=True).stdout.strip(),
    }
    try:
        rules_glob, dropped = prepare_rules(workdir, args.shipped_rules)
        meta["rules_glob"], meta["office_dropped"] = rules_glob, dropped
        sink = Sink(children, workdir)
        dns = LocalDns(children, workdir)
        milters = {m: Milter(children, smtpgate, workdir, m, rules_glob, dns.port)
                   for m in ("inet", "unix")}
        for attempt in range(3):
            postfix = Postfix(os.path.join(workdir, f"postfix{attempt}"), sink.port,
                              {"bare": "", "inet": milters["inet"].postfix_spec,
                               "unix": milters["unix"].postfix_spec})
            try:
                postfix.start()
                break
            except BenchError as e:
                postfix.stop()
                if attempt == 2 or "in use" not in str(e):
                    raise
                log("milter_bench: a listener port was taken, trying other ports")
        log(f"milter_bench: smtp-sink 127.0.0.1:{sink.port}, Postfix smtpd "
            + ", ".join(f"{m} 127.0.0.1:{p}" for m, p in postfix.ports.items())
            + f", milters {milters['inet'].postfix_spec} (pid {milters['inet'].proc.pid}) and "
            f"{milters['unix'].postfix_spec} (pid {milters['unix'].proc.pid}), work dir {workdir}")
        run_timeout = 60 if args.quick else 300
        # Warm-up, not recorded: smtpd and cleanup processes, the milters'
        # threads, DNS cache, RE2's lazily built DFAs, malloc arenas.
        for mode in MODES:
            w = one_round(children, mode, ("warm-up", 10), 100, sink, postfix, milters,
                          run_timeout)
            if not w["ok"]:
                raise BenchError(f"warm-up {mode}: {w['error']}")
        for scenario in scenarios:
            name, _, full, quick = scenario
            count = quick if args.quick else max(1, int(full * args.scale))
            for r in range(rounds):
                for mode in round_order(r):
                    res = one_round(children, mode, scenario, count, sink, postfix, milters,
                                    run_timeout)
                    res["round"] = r + 1
                    results.append(res)
                    cpu = " ".join(f"{k} {v:.3f}" for k, v in res["cpu_ms_per_msg"].items())
                    log(f"  {name:12} round {r + 1} {mode:5} "
                        + (f"{res['msgs_per_s']:7.0f} msgs/s ({count} in {res['seconds']:.2f} s, "
                           f"drained {res['drain_seconds']:.2f} s later)  CPU ms/msg: {cpu}"
                           if res["ok"] else f"FAILED: {res['error']}"))
                    failed |= not res["ok"]
        for milter in milters.values():
            if milter.proc.poll() is not None:
                raise BenchError(f"smtpgate milter ({milter.name}) died: {milter.errors()[-500:]}")
    except BenchError as e:
        log(f"milter_bench: FAILED: {e}")
        failed = True
    finally:
        signal.alarm(0)
        if postfix is not None:
            try:
                postfix.stop()
            except Exception as e:  # keep cleaning up
                log(f"milter_bench: could not stop Postfix: {e}")
        clean_up(children, workdir, args.keep, "milter_bench")

    meta["load_after"] = load_average()
    table = summarise(results)
    print_report(table, meta)
    for row in table:
        for mode in MODES:
            if row["modes"][mode]["rounds"] == 0:
                failed = True
    if not table:
        failed = True
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "summary": table, "rounds": results}, f, indent=1)
    print("\nmilter_bench: " + ("FAILED (see above)" if failed else
                                "OK: every round delivered every message"), file=sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
