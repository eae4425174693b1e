#!/usr/bin/env python3
"""auth_bench — what do SPF and DKIM checks cost the proxy?

Measures, in one run and side by side, Postfix's smtp-source sending one
fixed DKIM-signed message through `smtpgate proxy` to Postfix's smtp-sink,
through two smtpgate processes whose configs differ only in their rules:

  off  a few envelope and header rules that read no DNS or authentication
       field (no SPF, DKIM or DMARC check is made);
  on   the same rules plus rules that read `spf` (at mail) and `dkim` and
       `dmarc` (at data), so every message gets an SPF check of the envelope
       sender, a DKIM verification of its signature and a DMARC evaluation.

DNS comes from a local unbound on 127.0.0.1 that serves the test domain
auth.bench.test (SPF record with an `a:` and an `include:` mechanism, three
lookups to reach `pass`; the DKIM key; a DMARC record) and NXDOMAIN for
every other name. The message is signed once, here, with a fresh RSA-2048
key (rsa-sha256, relaxed/relaxed; From, To, Subject, Date, Message-ID),
using only Python's hashlib and `openssl dgst -sign`. A warm-up round
through both proxies fills every cache before anything is measured.

Scenarios: 1 and 50 concurrent sessions, each both with one SMTP session
per message (smtp-source's default) and over persistent sessions
(smtp-source -d). Within a scenario the two configs alternate round by
round (the order flips every round); the report gives medians, the ratio
on / off of the median msgs/s, and CPU per message of smtpgate, smtp-sink,
smtp-source and unbound (utime+stime from /proc/PID/stat, or wait4()).

A round counts only if smtp-source exited 0, smtp-sink's counter grew by
exactly the number of messages, the decision log gained one `deliver` line
per message, and those lines show that the checks ran as configured: in
"on" rounds every one must carry spf=pass, dkim=pass and dmarc=pass; in
"off" rounds none may carry an spf, dkim or dmarc fact.

  auth_bench.py --smtpgate build-ops/cli/smtpgate          # the full run (~3 min)
  auth_bench.py --smtpgate ... --quick                     # ctest smoke (seconds)

Exit status: 0 when every round delivered every message with the expected
facts (throughput is never asserted), 1 when one did not, 77 when
smtp-source, smtp-sink, unbound or openssl are missing. Shares its pieces
with proxy_bench.py. See BENCHMARKS.md, "SPF and DKIM cost in the proxy".
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__/ in the source tree for the import below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import (  # noqa: E402  (the shared pieces of the proxy benchmark)
    add_run_arguments, chosen_scenarios, clean_up, fmt, guard_run, missing_tool,
    RCPT, SKIP, BenchError, Children, Gate, LocalDns, Sink, cpu_model, cpu_seconds, find_smtpgate,
    load_average, median, run_source)

DOMAIN = "auth.bench.test"
SELECTOR = "bench2026"
SENDER = f"from@{DOMAIN}"
CONFIGS = ("off", "on")

# (name, sessions, messages per round: full, quick)
SCENARIOS = [
    ("1 session", 1, 600, 100),
    ("50 sessions", 50, 2000, 300),
]

# Both configs load this. No rule reads a DNS or authentication field.
COMMON_RULES = """\
# written by tests/bench/auth_bench.py: rules that read no DNS or auth field
list ourdomains domain { example.com }
rule blocked-sender on mail when sender ~ /^(spam|bulk)[0-9]*@/i then reject "550 5.7.1 Mail from <$sender> is not accepted here"
rule helo-ip-literal on mail when helo ~ /^\\[/ then score 1
rule relay-attempt on rcpt when rcpt.domain not in @ourdomains then reject "554 5.7.1 <$rcpt>: Relay access denied"
rule subject-shouting on data when header.subject ~ /^[^a-z]*([A-Z][^a-z]*){8}$/ then score 1
rule no-message-id on data when not header.message-id then score 1
threshold reject at 10 "550 5.7.1 Message rejected as spam, score $score"
"""

# Only the "on" config loads this as well: SPF at mail, DKIM and DMARC at data.
AUTH_RULES = """\
# written by tests/bench/auth_bench.py: rules that make SPF, DKIM and DMARC run
rule spf-fail on mail when spf == fail then reject "550 5.7.23 SPF check failed for $sender"
rule spf-softfail on mail when spf == softfail then score 1.5
rule dkim-broken on data when dkim in { fail, permerror } then score 2
rule dmarc-reject on data when dmarc == fail and dmarc.policy == reject then reject "550 5.7.26 DMARC policy of the From domain says reject"
rule authenticated-from on data when dkim == pass and dmarc == pass then score -1
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The signed message and the zone


def openssl(*args, data=None):
    proc = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise BenchError(f"openssl {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def relaxed_header(name, value):
    """RFC 6376 3.4.2: lower-case name, unfold, runs of WSP to one SP, no
    WSP at the end of the value or around the colon."""
    value = re.sub(r"\r\n(?=[ \t])", "", value)
    value = re.sub(r"[ \t]+", " ", value).strip(" ")
    return f"{name.strip().lower()}:{value}"


def relaxed_body(body):
    """RFC 6376 3.4.4: no WSP at line ends, runs of WSP to one SP, no empty
    lines at the end; a non-empty body ends with CRLF."""
    lines = [re.sub(r"[ \t]+", " ", line).rstrip(" ") for line in body.split("\r\n")]
    while lines and lines[-1] == "":
        lines.pop()
    return "".join(line + "\r\n" for line in lines)


def fold(text, width=72):
    return "\r\n\t ".join(text[i:i + width] for i in range(0, len(text), width))


def make_message(workdir, body_bytes=2048):
    """A fresh RSA-2048 key, a ~3 KB message (2 KB body) DKIM-signed with it, and the
    key's p= value. Returns (message file for smtp-source -F, p=)."""
    key = os.path.join(workdir, "dkim.key")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    public_der = openssl("pkey", "-in", key, "-pubout", "-outform", "DER")
    p_value = base64.b64encode(public_der).decode()

    headers = [
        ("From", f"Alice Sender <alice@{DOMAIN}>"),
        ("To", f"Bob Receiver <{RCPT}>"),
        ("Subject", "Quarterly figures, as discussed on Monday"),
        ("Date", "Tue, 01 Dec 2026 10:00:00 +0000"),
        ("Message-ID", f"<20261201100000.bench@{DOMAIN}>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
    ]
    words = ("the figures for the third quarter are attached below and the totals match "
             "what we discussed on monday so please check the regional numbers before "
             "friday when the report goes out to the board").split()
    lines, line, i = [], "", 0
    while sum(len(x) + 2 for x in lines) < body_bytes:
        word = words[i % len(words)]
        i += 1
        if len(line) + len(word) + 1 > 72:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    body = "Hello Bob,\r\n\r\n" + "".join(x + "\r\n" for x in lines) + "\r\nAlice\r\n"

    signed = ("From", "To", "Subject", "Date", "Message-ID")
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body).encode()).digest()).decode()
    sig_value = (f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={DOMAIN}; s={SELECTOR};\r\n"
                 f"\tt=1796119200; h={':'.join(signed)};\r\n"
                 f"\tbh={body_hash};\r\n\tb=")
    fields = dict(headers)
    to_sign = "".join(relaxed_header(n, fields[n]) + "\r\n" for n in signed)
    to_sign += relaxed_header("DKIM-Signature", sig_value)  # b= empty, no CRLF (RFC 6376 3.7)
    signature = base64.b64encode(openssl("dgst", "-sha256", "-sign", key,
                                         data=to_sign.encode())).decode()
    message = (f"DKIM-Signature: {sig_value}{fold(signature)}\r\n"
               + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n" + body)
    path = os.path.join(workdir, "signed.eml")
    with open(path, "w", newline="") as f:  # LF line ends: smtp-source -F adds CRLF
        f.write(message.replace("\r\n", "\n"))
    with open(os.path.join(workdir, "signed-crlf.eml"), "w", newline="") as f:
        f.write(message)
    return path, p_value


def txt(name, value):
    """A TXT record in zone-file syntax, split into <= 250-byte strings."""
    return f"{name}. TXT " + " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250))


def zone(p_value):
    return [
        # SPF: an `a:` that does not match, then an include that does: three
        # lookups (TXT, A, TXT) before `pass` for 127.0.0.1.
        txt(DOMAIN, f"v=spf1 a:out.{DOMAIN} include:_spf.{DOMAIN} -all"),
        f"out.{DOMAIN}. A 192.0.2.25",
        txt(f"_spf.{DOMAIN}", "v=spf1 ip4:127.0.0.0/8 -all"),
        txt(f"{SELECTOR}._domainkey.{DOMAIN}", f"v=DKIM1; k=rsa; p={p_value}"),
        txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; adkim=r; aspf=r"),
    ]


def write_rules(workdir):
    """One rules directory per config; returns {config: glob}."""
    globs = {}
    for config in CONFIGS:
        d = os.path.join(workdir, f"rules-{config}")
        os.makedirs(d)
        with open(os.path.join(d, "10-common.rules"), "w") as f:
            f.write(COMMON_RULES)
        if config == "on":
            with open(os.path.join(d, "20-auth.rules"), "w") as f:
                f.write(AUTH_RULES)
        globs[config] = os.path.join(d, "*.rules")
    return globs


# ---------------------------------------------------------------------------
# One round


class DecisionLog:
    """The decision lines a gate wrote since the last call."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def new_lines(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def check_facts(config, lines, count):
    """None if the decision lines are what `config` must produce, else why not."""
    deliver = [d for d in lines if d.get("action") == "deliver"]
    others = [d for d in lines if d.get("action") != "deliver"]
    if others:
        d = others[0]
        return (f"{len(others)} decision(s) other than deliver, first: {d.get('action')} at "
                f"{d.get('stage')} by {d.get('rule')}: {d.get('reply')}")
    if len(deliver) != count:
        return f"decision log has {len(deliver)} deliver lines for {count} messages"
    want = {"spf": "pass", "dkim": "pass", "dmarc": "pass"}
    for d in deliver:
        facts = {k: d.get(k) for k in want}
        if config == "on" and facts != want:
            return f"checks did not all pass: {facts} (session {d.get('session')})"
        if config == "off" and any(v is not None for v in facts.values()):
            return f"checks ran with no rule asking: {facts} (session {d.get('session')})"
    return None


def one_round(children, config, scenario, count, reuse, sink, gates, logs, dns, message, timeout):
    name, sessions = scenario[0], scenario[1]
    gate = gates[config]
    m0 = sink.settle()
    logs[config].new_lines()  # skip whatever came before
    before = {"smtp-sink": cpu_seconds(sink.proc.pid), "smtpgate": cpu_seconds(gate.proc.pid),
              "unbound": cpu_seconds(dns.proc.pid)}
    status, wall, source_cpu, stderr = run_source(children, gate.port, sessions, count, 0, reuse,
                                                  timeout, sender=SENDER, message_file=message)
    after = {"smtp-sink": cpu_seconds(sink.proc.pid), "smtpgate": cpu_seconds(gate.proc.pid),
             "unbound": cpu_seconds(dns.proc.pid)}
    delivered = sink.settle() - m0
    time.sleep(0.05)  # the last decision line is written after the backend's 250
    problem = check_facts(config, logs[config].new_lines(), count)
    cpu = {k: 1000 * (after[k] - before[k]) / count for k in before}
    cpu["smtp-source"] = 1000 * source_cpu / count
    r = {"scenario": name, "sessions": sessions,
         "connections": "reuse" if reuse else "per-message", "config": config,
         "messages": count, "delivered": delivered, "source_status": status, "seconds": wall,
         "msgs_per_s": count / wall, "cpu_ms_per_msg": cpu}
    errors = []
    if status != 0:
        errors.append(f"smtp-source exit {status}" + (f": {stderr[-300:]}" if stderr else ""))
    if delivered != count:
        errors.append(f"sink counted {delivered} of {count}")
    if problem:
        errors.append(problem)
    r["ok"] = not errors
    if errors:
        r["error"] = "; ".join(errors)
    return r


# ---------------------------------------------------------------------------
# Report


def summarise(results):
    table = []
    for connections in ("per-message", "reuse"):
        for name, *_ in SCENARIOS:
            mine = [r for r in results if r["scenario"] == name and r["connections"] == connections]
            if not mine:
                continue
            row = {"scenario": name, "connections": connections,
                   "failures": [f"{r['config']} round {r['round']}: {r['error']}"
                                for r in mine if not r["ok"]]}
            for config in CONFIGS:
                ok = [r for r in mine if r["config"] == config and r["ok"]]
                rates = [r["msgs_per_s"] for r in ok]
                row[config] = {
                    "rounds": len(ok),
                    "msgs_per_s": median(rates),
                    "range": [min(rates, default=None), max(rates, default=None)],
                    "cpu_ms_per_msg": {k: median([r["cpu_ms_per_msg"][k] for r in ok])
                                       for k in ("smtpgate", "smtp-sink", "smtp-source",
                                                 "unbound")},
                }
            row["ratio"] = (row["on"]["msgs_per_s"] / row["off"]["msgs_per_s"]
                            if row["on"]["rounds"] and row["off"]["rounds"] else float("nan"))
            # Per round pair (same round number): on / off, to show the spread.
            pairs = []
            for rnd in sorted({r["round"] for r in mine}):
                by = {r["config"]: r for r in mine if r["round"] == rnd and r["ok"]}
                if len(by) == 2:
                    pairs.append(by["on"]["msgs_per_s"] / by["off"]["msgs_per_s"])
            row["round_ratios"] = pairs
            row["median_round_ratio"] = median(pairs)
            # If the two cores did nothing but this benchmark and it were
            # CPU-bound (50 sessions; 1 session is bound by latency, so the
            # report leaves it out there), throughput would follow the CPU
            # all three processes spend per message: off's total over on's.
            totals = {c: sum(row[c]["cpu_ms_per_msg"][k] for k in ("smtpgate", "smtp-sink",
                                                                    "smtp-source"))
                      for c in CONFIGS}
            row["cpu_bound_ratio"] = (totals["off"] / totals["on"] if totals["on"] > 0
                                      else float("nan"))
            row["gate_cpu_added_ms"] = (row["on"]["cpu_ms_per_msg"]["smtpgate"]
                                        - row["off"]["cpu_ms_per_msg"]["smtpgate"])
            table.append(row)
    return table


def print_report(table, meta):
    out = sys.stdout
    print(f"\nsmtpgate SPF/DKIM cost benchmark: {meta['cpu']} x {meta['nproc']}, rounds "
          f"{meta['rounds']}, 3 KB DKIM-signed message (rsa-sha256 2048, relaxed/relaxed), "
          f"load avg {meta['load_before']} -> {meta['load_after']}\nsmtpgate {meta['smtpgate']} "
          f"(built {meta['smtpgate_built']}), threads {meta['threads']}", file=out)
    labels = {"per-message": "one SMTP session per message (smtp-source default)",
              "reuse": "messages over persistent sessions (smtp-source -d)"}
    for connections in ("per-message", "reuse"):
        rows = [row for row in table if row["connections"] == connections]
        if not rows:
            continue
        print(f"\n{labels[connections]}\n", file=out)
        print("| sessions | checks off msgs/s | checks on msgs/s | ratio on/off "
              "| per-round ratios (median) | smtpgate CPU ms/msg: off / on "
              "| sink+source CPU ms/msg: off / on | CPU-bound ratio | unbound CPU ms/msg (on) |",
              file=out)
        print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |", file=out)
        for row in rows:
            off, on = row["off"], row["on"]

            def ss(c):
                return c["cpu_ms_per_msg"]["smtp-sink"] + c["cpu_ms_per_msg"]["smtp-source"]
            print(f"| {row['scenario']} | {fmt(off['msgs_per_s'], ',.0f')} "
                  f"| {fmt(on['msgs_per_s'], ',.0f')} | **{fmt(row['ratio'], '.2f')}** "
                  f"| {', '.join(format(x, '.2f') for x in row['round_ratios'])} "
                  f"({fmt(row['median_round_ratio'], '.2f')}) "
                  f"| {fmt(off['cpu_ms_per_msg']['smtpgate'], '.3f')} / "
                  f"{fmt(on['cpu_ms_per_msg']['smtpgate'], '.3f')} "
                  f"| {fmt(ss(off), '.3f')} / {fmt(ss(on), '.3f')} "
                  f"| {fmt(row['cpu_bound_ratio'], '.2f') if row['scenario'] == '50 sessions' else '—'} "
                  f"| {fmt(on['cpu_ms_per_msg']['unbound'], '.4f')} |", file=out)
        for row in rows:
            for config in CONFIGS:
                c = row[config]
                print(f"  {row['scenario']:12} {config:3}: msgs/s min-max "
                      f"{fmt(c['range'][0], '.0f')}-{fmt(c['range'][1], '.0f')} over "
                      f"{c['rounds']} rounds", file=out)
            for failure in row["failures"]:
                print(f"  FAILED {row['scenario']}, {failure}", file=out)
    for row in table:
        if row["scenario"] == "50 sessions":
            verdict = ("holds" if row["ratio"] >= 0.8 else "does NOT hold") \
                if row["ratio"] == row["ratio"] else "not measured"
            print(f"\ntarget on/off >= 0.8 at 50 sessions, {row['connections']}: "
                  f"{fmt(row['ratio'], '.2f')} -> {verdict} (median of per-round ratios "
                  f"{fmt(row['median_round_ratio'], '.2f')}; CPU-bound estimate "
                  f"{fmt(row['cpu_bound_ratio'], '.2f')})"
                  + (" [--quick: not a measurement]" if meta["quick"] else ""), file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smtpgate", help="the smtpgate executable (default: build-bench/, "
                    "build-perf/ or build/ under the repository)")
    ap.add_argument("--quick", action="store_true",
                    help="a few hundred messages, one round: proves it runs")
    ap.add_argument("--rounds", type=int, help="rounds per config and scenario (default 6, so "
                    "each config runs first equally often; quick 1)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the message counts")
    ap.add_argument("--scenarios", help="comma-separated indexes into the scenario list "
                    "(1: 1 session, 2: 50 sessions)")
    ap.add_argument("--connections", choices=("per-message", "reuse", "both"), default="both",
                    help="per-message: smtp-source's default, one SMTP session per message; "
                         "reuse: smtp-source -d; both (default)")
    ap.add_argument("--threads", type=int, default=0,
                    help="smtpgate proxy --threads (default: smtpgate's own, one per core)")
    add_run_arguments(ap, 900)
    args = ap.parse_args()

    rounds = args.rounds or (1 if args.quick else 6)
    timeout = args.timeout or (120 if args.quick else 900)
    scenarios = chosen_scenarios(SCENARIOS, args.scenarios)

    if missing_tool("auth_bench"):
        return SKIP
    if not shutil.which("openssl"):
        log("auth_bench: SKIP: openssl not installed")
        return SKIP
    smtpgate = find_smtpgate(args.smtpgate)
    if not smtpgate or not os.access(smtpgate, os.X_OK):
        log("auth_bench: no smtpgate executable; pass --smtpgate PATH")
        return 2

    children = Children()
    workdir = tempfile.mkdtemp(prefix="smtpgate-auth-bench.")

    guard_run(timeout)

    results, failed = [], False
    meta = {"nproc": os.cpu_count(), "cpu": cpu_model(), "rounds": rounds, "quick": args.quick,
            "smtpgate": smtpgate, "threads": args.threads or "default",
            "smtpgate_built": time.strftime("%Y-%m-%d %H:%M", time.localtime(
                os.path.getmtime(smtpgate))),
            "load_before": load_average(), "domain": DOMAIN}
    try:
        message, p_value = make_message(workdir)
        records = zone(p_value)
        meta["zone"] = records
        globs = write_rules(workdir)
        sink = Sink(children, workdir)
        dns = LocalDns(children, workdir, records)
        gates = {c: Gate(children, smtpgate, workdir, f"auth-{c}", sink.port, globs[c],
                         args.threads, (), dns.port) for c in CONFIGS}
        logs = {c: DecisionLog(gates[c].log_path) for c in CONFIGS}
        log(f"auth_bench: smtp-sink on 127.0.0.1:{sink.port}, unbound on 127.0.0.1:{dns.port}, "
            + ", ".join(f"smtpgate {c} on 127.0.0.1:{g.port} (pid {g.proc.pid})"
                        for c, g in gates.items()) + f", work dir {workdir}")
        run_timeout = 60 if args.quick else 300
        # Warm-up, not recorded, but checked like a round: unbound's answers,
        # smtpgate's resolver cache, RE2's DFAs, page cache, malloc arenas.
        for config in CONFIGS:
            for reuse in (False, True):
                w = one_round(children, config, ("warm-up", 10), 200, reuse, sink, gates, logs,
                              dns, message, run_timeout)
                if not w["ok"]:
                    raise BenchError(f"warm-up {config}: {w['error']}")
        ways = ["per-message", "reuse"] if args.connections == "both" else [args.connections]
        for connections in ways:
            for scenario in scenarios:
                name, _, full, quick = scenario
                count = quick if args.quick else max(1, int(full * args.scale))
                for r in range(rounds):
                    for config in (CONFIGS if r % 2 == 0 else CONFIGS[::-1]):
                        res = one_round(children, config, scenario, count,
                                        connections == "reuse", sink, gates, logs, dns, message,
                                        run_timeout)
                        res["round"] = r + 1
                        results.append(res)
                        cpu = " ".join(f"{k} {v:.3f}" for k, v in res["cpu_ms_per_msg"].items())
                        log(f"  {connections:11} {name:11} round {r + 1} checks {config:3} "
                            + (f"{res['msgs_per_s']:7.0f} msgs/s ({count} in "
                               f"{res['seconds']:.2f} s)  CPU ms/msg: {cpu}"
                               if res["ok"] else f"FAILED: {res['error']}"))
                        failed |= not res["ok"]
                        if not res["ok"]:
                            time.sleep(1)
        for c, g in gates.items():
            if g.proc.poll() is not None:
                raise BenchError(f"smtpgate ({c}) died during the run: {g.errors()[-500:]}")
    except BenchError as e:
        log(f"auth_bench: FAILED: {e}")
        failed = True
    finally:
        clean_up(children, workdir, args.keep, "auth_bench")

    meta["load_after"] = load_average()
    table = summarise(results)
    print_report(table, meta)
    if not table or any(not row["ratio"] == row["ratio"] for row in table):
        failed = True
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "summary": table, "rounds": results}, f, indent=1)
    print("\nauth_bench: " + ("FAILED (see above)" if failed else
                              "OK: every round delivered every message, with spf, dkim and dmarc "
                              "= pass when the checks were on and no such fact when off"),
          file=sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
