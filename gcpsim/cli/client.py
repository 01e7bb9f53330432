"""The client commands of `python -m gcpsim` (behavior, job-behavior, rate, metrics, fault,
outage, show): each one call to the running simulator's `/_sim/...` control surface."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from gcpsim.cli import replica
from gcpsim.cli.common import (
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_USAGE,
    PORTS_FILE,
    CliError,
    default_state_dir,
)


def _client_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="simulator address")
    common.add_argument(
        "--port",
        type=int,
        default=None,
        help="simulator REST port (default $GCPSIM_PORT, else the state dir's "
        f"{PORTS_FILE}, else {DEFAULT_PORT})",
    )
    common.add_argument(
        "--state-dir",
        default=None,
        help=f"state dir holding {PORTS_FILE} (default $GCPSIM_STATE_DIR or {DEFAULT_STATE_DIR})",
    )

    p = argparse.ArgumentParser(prog="python -m gcpsim", description="Control a running gcpsim.")
    sub = p.add_subparsers(dest="command", required=True)

    jb = sub.add_parser(
        "job-behavior",
        parents=[common],
        help="set how executions of a Cloud Run job at an image version run",
    )
    jb.add_argument("job", nargs="?", help="Cloud Run job name or glob (migrate-*)")
    jb.add_argument("version", nargs="?", help="image version (tag), e.g. v1.2.0, or *")
    jb.add_argument("--fail", action="store_true", help="the tasks exit non-zero")
    jb.add_argument("--duration", help="how long the tasks run, e.g. 5s (default 1s)")
    jb.add_argument("--message", help="the failure message (with --fail)")
    jb.add_argument("--clear", action="store_true", help="remove every job behaviour")

    b = sub.add_parser(
        "behavior",
        parents=[common],
        help="set how revisions of a service at an image version behave",
    )
    b.add_argument("service", nargs="?", help="Cloud Run service name or glob (node-server-*)")
    b.add_argument("version", nargs="?", help="image version (tag), e.g. v1.2.0, or *")
    b.add_argument("--error-rate", type=float, help="fraction of requests that fail (0..1)")
    b.add_argument("--p50-ms", type=float, help="median latency in ms")
    b.add_argument("--p95-ms", type=float, help="95th percentile latency in ms")
    b.add_argument(
        "--error-log-rate",
        type=float,
        help="application ERROR log entries (log run.googleapis.com/stderr) per request, "
        "whatever the response codes (default 0.001)",
    )
    b.add_argument(
        "--smoke-fail",
        action="store_true",
        default=None,
        help="service/tag URL health checks answer 503",
    )
    b.add_argument(
        "--broken",
        action="store_true",
        default=None,
        help="revisions never become ready (the deploy operation fails)",
    )
    b.add_argument("--clear", action="store_true", help="remove every behaviour")

    r = sub.add_parser(
        "rate",
        parents=[common],
        help="set a service's synthetic request rate (or one version's); no arguments: list",
        description="SERVICE [VERSION] RPS sets the requests per second behind SERVICE (a name "
        "or glob); with VERSION (an image tag), the rate behind the share of traffic that goes "
        "to revisions of that version. Without VERSION (or with *), the service's total rate. "
        "--clear [SERVICE [VERSION]] removes rules (all of them without SERVICE).",
    )
    r.add_argument("args", nargs="*", metavar="SERVICE [VERSION] RPS")
    r.add_argument("--clear", action="store_true", help="remove rate rules")

    m = sub.add_parser(
        "metrics",
        parents=[common],
        help="set Monitoring's sampling period and visibility delay; no options: show them",
        description="Cloud Monitoring collects a service's requests into samples of "
        "--sample-period seconds and shows a sample --delay seconds after it ends (real Cloud "
        "Run: 60 and up to 180). SERVICE (a name or glob, default *: every service) scopes the "
        "rule; values left out fall through to older matching rules, then to the serve flags. "
        "--clear [SERVICE] removes rules (all of them without SERVICE).",
    )
    m.add_argument("service", nargs="?", help="Cloud Run service name or glob (default *)")
    m.add_argument("--sample-period", type=int, metavar="SECONDS", help="seconds per sample")
    m.add_argument("--delay", type=float, metavar="SECONDS", help="visibility delay in seconds")
    m.add_argument("--clear", action="store_true", help="remove timing rules")

    f = sub.add_parser("fault", parents=[common], help="inject a fault into an API method")
    f.add_argument(
        "method",
        nargs="?",
        help="method such as run.services.get, sql.backupRuns.insert, or * for all",
    )
    f.add_argument("--status", type=int, help="HTTP status to answer with (429, 500, 503, ...)")
    f.add_argument("--rate", type=float, help="probability a call is hit (0..1, default 1)")
    f.add_argument("--latency-ms", type=int, help="added latency in ms")
    f.add_argument("--times", type=int, help="fire this many times, then expire")
    f.add_argument(
        "--op-error",
        action="store_true",
        help="the call succeeds but its long-running operation ends in error",
    )
    f.add_argument("--message", help="error message")
    f.add_argument("--clear", action="store_true", help="remove every fault (or --id ID)")
    f.add_argument("--id", dest="rule_id", help="with --clear: remove only this fault")

    o = sub.add_parser(
        "outage",
        parents=[common],
        help="simulate a regional outage (or end it with --clear); no arguments: list",
        description="While REGION is out, Cloud Run and Cloud SQL calls for resources in it "
        "answer 503 UNAVAILABLE, its service URLs answer 503, its metrics stop and the "
        "application writes nothing there; backups stay listable and restorable elsewhere. "
        "--clear [REGION] ends the outage (every outage without REGION).",
    )
    o.add_argument("region", nargs="?", help="region name, e.g. us-central1")
    o.add_argument("--clear", action="store_true", help="end the outage")

    replica.add_parser(sub, common)

    s = sub.add_parser("show", parents=[common], help="print services, traffic, behaviours, faults")
    s.add_argument("--json", action="store_true", help="print the raw state as JSON")
    return p  # fmt: skip


def _resolve_port(args: argparse.Namespace) -> tuple[int, str]:
    if args.port is not None:
        return args.port, "--port"
    env = os.environ.get("GCPSIM_PORT")
    if env:
        try:
            return int(env), "GCPSIM_PORT"
        except ValueError:
            raise CliError(f"GCPSIM_PORT={env!r} is not a port number", EXIT_USAGE) from None
    ports = Path(args.state_dir or default_state_dir()) / PORTS_FILE
    try:
        return int(json.loads(ports.read_text())["port"]), str(ports)
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_PORT, "the default port"


class _Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.host = args.host
        self.port, self.source = _resolve_port(args)
        self.base = f"http://{self.host}:{self.port}"
        self.state_dir = args.state_dir or default_state_dir()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read()).get("error", err.reason)
            except (ValueError, AttributeError):
                message = err.reason
            if isinstance(message, dict) and isinstance(message.get("message"), str):
                message = message["message"]  # an API error body (Cloud SQL, Cloud Run)
            if not isinstance(message, str):
                message = json.dumps(message)
            raise CliError(message, EXIT_USAGE if 400 <= err.code < 500 else EXIT_FAILED) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            reason = getattr(err, "reason", err)
            raise CliError(
                f"gcpsim is not running at {self.base} (port from {self.source}: {reason}); "
                f"start it with `python -m gcpsim --state-dir {self.state_dir}` or set "
                "GCPSIM_PORT to a running simulator's port",
                EXIT_NOT_RUNNING,
            ) from None

    def clear(self, path: str, what: str) -> None:
        """DELETE `path` (a rule or outage listing) and say how many `what` it removed."""
        n = self.call("DELETE", path).get("cleared", 0)
        print(f"cleared {n} {what}")

    def set_rule(self, path: str, body: dict[str, Any], what: str) -> None:
        """POST a rule to `path` and print it as the simulator stored it."""
        rule = self.call("POST", path, body)
        print(f"{what} set: {json.dumps(rule)}")


def _pct(v: Any) -> str:
    return f"{int(v or 0):>3}%"


def _print_state(state: dict[str, Any]) -> None:
    services = state.get("services", [])
    print(f"Cloud Run services ({len(services)})")
    for s in services:
        flags = []
        if s.get("reconciling"):
            flags.append("reconciling")
        if s.get("drained"):
            flags.append("drained")
        flag = f" [{', '.join(flags)}]" if flags else ""
        print(f"  {s['project']}/{s['location']}/{s['service']}  gen {s['generation']}  "
              f"Ready={s.get('ready')}{flag}")  # fmt: skip
        if s.get("message"):
            print(f"    message: {s['message']}")
        images = {r["name"]: r["image"] for r in s.get("revisions", [])}
        serving = s.get("trafficStatuses") or []
        if not serving:
            print("    serving: nothing")
        for t in serving:
            rev = t.get("revision", "?")
            tag = f"  tag {t['tag']} -> {t.get('uri', '')}" if t.get("tag") else ""
            version = images.get(rev, "").rsplit(":", 1)[-1]
            print(f"    serving {_pct(t.get('percent'))} {rev} ({version}){tag}")
        for r in s.get("revisions", []):
            beh = r.get("behavior") or {}
            note = []
            if beh.get("broken"):
                note.append("broken")
            if beh.get("smoke_fail"):
                note.append("smoke_fail")
            note.append(f"err {beh.get('error_rate', 0):g} p95 {beh.get('p95_ms', 0):g}ms "
                        f"errlogs {beh.get('error_log_rate', 0):g}/req")  # fmt: skip
            print(f"      {r['name']:<34} {r['state']:<8} {r['image'].rsplit('/', 1)[-1]:<28} "
                  f"{', '.join(note)}")  # fmt: skip
    jobs = state.get("jobs", [])
    if jobs:
        print(f"Cloud Run jobs ({len(jobs)})")
    for j in jobs:
        print(f"  {j['key']}  {j['image'].rsplit('/', 1)[-1]}  "
              f"executions {j['executionCount']}")  # fmt: skip
        for e in j["executions"]:
            more = f"  release {e['release']}" if e["release"] else ""
            more += f"  db {e['database']}" if e["database"] else ""
            more += f"  ({e['message']})" if e["message"] else ""
            print(f"    {e['id']:<34} {e['status']:<10} {e['tasks']} task(s){more}")
    rules = state.get("job_behaviors", [])
    if rules:
        print(f"Job behaviours ({len(rules)})")
    for r in rules:
        print(f"  {r['job']} {r['version']}: fail={r['fail']} duration={r['duration']}")
    behaviors = state.get("behaviors", [])
    print(f"Behaviours ({len(behaviors)})")
    for b in behaviors:
        values = " ".join(f"{k}={v}" for k, v in b.items() if k not in ("service", "version"))
        print(f"  {b['service']} {b['version']}: {values or '(defaults)'}")
    settings = state.get("settings", {})
    _print_rates(settings.get("request_rate", 0), state.get("rates", []))
    _print_timing(
        {
            "sample_period": settings.get("metric_sample_period", 1),
            "delay": settings.get("metric_delay", 0),
        },
        state.get("metric_timing", []),
    )
    outages = state.get("outages", [])
    print(f"Outages ({len(outages)})")
    for o in outages:
        print(f"  {o['region']} out since {o['since']}")
    faults = state.get("faults", [])
    print(f"Faults ({len(faults)})")
    for f in faults:
        what = "op_error" if f.get("op_error") else f"status {f.get('status')}"
        extra = []
        if f.get("rate", 1) != 1:
            extra.append(f"rate {f['rate']:g}")
        if f.get("latency_ms"):
            extra.append(f"+{f['latency_ms']}ms")
        if f.get("times") is not None:
            extra.append(f"{f['times']} left")
        if f.get("message"):
            extra.append(repr(f["message"]))
        print(f"  {f['id']}  {f['method']}  {what}  {' '.join(extra)}".rstrip())


def _rate_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any] | None:
    """The POST body of `rate SERVICE [VERSION] RPS`, or None for --clear / a listing."""
    pos = list(args.args)
    if args.clear:
        if len(pos) > 2:
            parser.error("rate --clear takes at most SERVICE and VERSION")
        return None
    if not pos:
        return None
    if len(pos) not in (2, 3):
        parser.error("rate needs SERVICE [VERSION] RPS (or --clear, or nothing to list)")
    try:
        rps = float(pos[-1])
    except ValueError:
        parser.error(f"rate: RPS must be a number of requests per second, got {pos[-1]!r}")
    return {"service": pos[0], "version": pos[1] if len(pos) == 3 else "*", "rps": rps}


def _rate(c: _Client, args: argparse.Namespace, body: dict[str, Any] | None) -> None:
    if args.clear:
        query = urllib.parse.urlencode(dict(zip(("service", "version"), args.args, strict=False)))
        c.clear("/_sim/rates" + (f"?{query}" if query else ""), "rate rule(s)")
    elif body is not None:
        c.set_rule("/_sim/rates", body, "rate")
    else:
        listing = c.call("GET", "/_sim/rates")
        _print_rates(listing.get("default_rps"), listing.get("rates", []))


def _print_rates(default: Any, rules: list[dict[str, Any]]) -> None:
    print(f"Request rates ({len(rules)} rule(s); default {default:g} rps per service)")
    for r in rules:
        scope = "total" if r["version"] == "*" else "behind its share"
        print(f"  {r['service']} {r['version']}: {r['rps']:g} rps ({scope})")


def _metric_timing(c: _Client, args: argparse.Namespace) -> None:
    if args.clear:
        query = f"?{urllib.parse.urlencode({'service': args.service})}" if args.service else ""
        c.clear("/_sim/metric-timing" + query, "metric timing rule(s)")
    elif args.sample_period is not None or args.delay is not None:
        body: dict[str, Any] = {"service": args.service or "*"}
        if args.sample_period is not None:
            body["sample_period"] = args.sample_period
        if args.delay is not None:
            body["delay"] = args.delay
        c.set_rule("/_sim/metric-timing", body, "metric timing")
    else:
        listing = c.call("GET", "/_sim/metric-timing")
        _print_timing(listing.get("default", {}), listing.get("rules", []))


def _print_timing(default: dict[str, Any], rules: list[dict[str, Any]]) -> None:
    print(
        f"Metric timing ({len(rules)} rule(s); default: samples of "
        f"{default.get('sample_period', 1)} s, visible {default.get('delay', 0):g} s after)"
    )
    for r in rules:
        parts = []
        if r.get("sample_period") is not None:
            parts.append(f"samples of {r['sample_period']} s")
        if r.get("delay") is not None:
            parts.append(f"visible {r['delay']:g} s after")
        print(f"  {r['service']}: {', '.join(parts)}")


def client(argv: list[str]) -> int:
    parser = _client_parser()
    args = parser.parse_args(argv)
    if args.command == "behavior" and not args.clear and not (args.service and args.version):
        parser.error("behavior needs SERVICE and VERSION (or --clear)")
    if args.command == "job-behavior" and not args.clear and not (args.job and args.version):
        parser.error("job-behavior needs JOB and VERSION (or --clear)")
    duration: float | None = None
    if args.command == "job-behavior" and args.duration:
        try:
            duration = float(str(args.duration).removesuffix("s"))
        except ValueError:
            parser.error(f"--duration {args.duration!r}: write seconds, e.g. 5s or 0.5")
    rate_body: dict[str, Any] | None = None
    if args.command == "rate":
        rate_body = _rate_args(parser, args)
    timing_given = args.command == "metrics" and (args.sample_period, args.delay) != (None, None)
    if args.command == "metrics" and args.clear and timing_given:
        parser.error("metrics --clear takes no --sample-period or --delay")
    if args.command == "replica":
        replica.check_args(parser, args)
    if args.command == "fault" and not args.clear:
        if not args.method:
            parser.error("fault needs METHOD (or --clear)")
        if args.status is None and not args.op_error and not args.latency_ms:
            parser.error("fault needs --status, --op-error or --latency-ms")
    try:
        c = _Client(args)
        if args.command == "job-behavior":
            if args.clear:
                c.call("DELETE", "/_sim/job-behaviors")
                print("cleared all job behaviours")
                return 0
            body = {"job": args.job, "version": args.version, "fail": args.fail}
            if duration is not None:
                body["duration"] = duration
            if args.message:
                body["message"] = args.message
            c.set_rule("/_sim/job-behaviors", body, "job behaviour")
        elif args.command == "behavior":
            if args.clear:
                c.call("DELETE", "/_sim/behaviors")
                print("cleared all behaviours")
                return 0
            body = {
                "service": args.service,
                "version": args.version,
                "error_rate": args.error_rate,
                "p50_ms": args.p50_ms,
                "p95_ms": args.p95_ms,
                "error_log_rate": args.error_log_rate,
                "smoke_fail": args.smoke_fail,
                "broken": args.broken,
            }
            given = {k: v for k, v in body.items() if v is not None}
            c.set_rule("/_sim/behaviors", given, "behaviour")
        elif args.command == "rate":
            _rate(c, args, rate_body)
        elif args.command == "metrics":
            _metric_timing(c, args)
        elif args.command == "replica":
            replica.run(c, args)
        elif args.command == "outage":
            if args.clear:
                path = f"/_sim/outages/{args.region}" if args.region else "/_sim/outages"
                c.clear(path, "outage(s)")
            elif args.region:
                rec = c.call("POST", "/_sim/outages", {"region": args.region})
                print(f"outage: {rec['region']} is out since {rec['since']}")
            else:
                outages = c.call("GET", "/_sim/outages")
                print("\n".join(f"{o['region']} out since {o['since']}" for o in outages)
                      or "no outage")  # fmt: skip
        elif args.command == "fault":
            if args.clear:
                path = f"/_sim/faults/{args.rule_id}" if args.rule_id else "/_sim/faults"
                c.clear(path, "fault(s)")
                return 0
            body = {
                "method": args.method,
                "status": args.status,
                "rate": args.rate,
                "latency_ms": args.latency_ms,
                "times": args.times,
                "op_error": args.op_error or None,
                "message": args.message,
            }
            rule = c.call("POST", "/_sim/faults", {k: v for k, v in body.items() if v is not None})
            print(f"fault {rule['id']} added: {json.dumps(rule)}")
        else:
            state = c.call("GET", "/_sim/state")
            if args.json:
                print(json.dumps(state, indent=2))
            else:
                _print_state(state)
    except CliError as err:
        print(f"gcpsim: {err}", file=sys.stderr)
        return err.code
    return 0
