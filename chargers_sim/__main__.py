"""``python -m chargers_sim``: run simulated stations, or generate load.

    python -m chargers_sim --url ws://127.0.0.1:9000 --count 10 --ocpp 2.0.1 --sessions 3
    python -m chargers_sim load --url ws://127.0.0.1:9000 --count 1000 --duration 20 --json

A station the central system refuses (HTTP 401, 403, 404), or nothing listening at
the address for ``--unreachable-grace`` seconds, ends the command with one line on
stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any, NoReturn

from chargers_sim.connection import UNREACHABLE_GRACE
from chargers_sim.fleet import Fleet
from chargers_sim.limits import parse_external_limit
from chargers_sim.load import run_load, run_load_procs
from chargers_sim.station import ConnectFailed
from csms.protocol import OcppVersion

__all__ = ["main"]

# How often --sessions 0 prints a progress line.
PROGRESS_SECONDS = 10.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one clear line, exit code 2, no usage dump
        sys.stderr.write(f"error: {message} (see: python -m chargers_sim --help)\n")
        raise SystemExit(2)


def _version(text: str) -> str:
    try:
        return OcppVersion.parse(text).short
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text}")
        return value
    return parse


def _external_limit(text: str) -> tuple[float, str]:
    try:
        return parse_external_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _security_event(text: str) -> tuple[str, str | None]:
    kind, _, info = text.partition(":")
    if not kind or len(kind) > 50 or not kind.isascii() or not kind.isalnum():
        raise argparse.ArgumentTypeError(
            f"not a security event type (letters and digits, at most 50): {kind!r}")
    return kind, info or None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True,
                   help="the central system's OCPP address, e.g. ws://127.0.0.1:9000"
                        " (required)")
    p.add_argument("--count", type=_positive(int), default=1,
                   help="how many stations to simulate")
    p.add_argument("--ocpp", type=_version, default="1.6",
                   help="the OCPP version the stations speak: 1.6 or 2.0.1")
    p.add_argument("--mix", action="store_true",
                   help="half the stations speak 1.6, half 2.0.1 (overrides --ocpp)")
    p.add_argument("--id-prefix", default="SIM",
                   help="station ids are PREFIX00001, PREFIX00002, ...; each must be"
                        " registered at the central system, unless it auto-registers")
    p.add_argument("--password", default=None,
                   help="HTTP Basic password of every station (security profile 1);"
                        " none: no Authorization header")
    p.add_argument("--seed", type=int, default=1,
                   help="random seed: the same seed gives the same meter readings and"
                        " timings")
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object instead of a table")
    p.add_argument("--unreachable-grace", type=_positive(float), default=UNREACHABLE_GRACE,
                   metavar="SECONDS",
                   help="how long nothing listening at --url is waited out (a central"
                        " system that is starting up) before the command gives up")


def _parser() -> tuple[_Parser, dict[str, _Parser]]:
    parser = _Parser(prog="python -m chargers_sim", formatter_class=_Help,
                     description="Simulated OCPP stations (1.6-J and 2.0.1): run them, or"
                                 " generate load.")
    sub = parser.add_subparsers(dest="mode", required=True, parser_class=_Parser,
                                title="modes (without one: run)")
    run = sub.add_parser(
        "run", help="stations that charge K times (0: stay online, idle)",
        description="Simulated stations that connect, boot, and charge --sessions times"
                    " each; then a summary is printed.", formatter_class=_Help)
    _common(run)
    run.add_argument("--sessions", type=_positive(int), default=1,
                     help="charging sessions per station, one after the other; 0: the"
                          " stations stay online and idle until Ctrl-C, printing progress")
    run.add_argument("--session-seconds", type=_positive(float), default=2.0,
                     help="how long each session charges, in seconds of real time")
    run.add_argument("--meter-interval", type=_positive(float), default=0.5,
                     help="seconds between meter values during a session")
    run.add_argument("--power-kw", type=_positive(float), default=11.0,
                     help="the charging power of each station in kW (time runs 60x"
                          " faster: one second charges like one minute)")
    run.add_argument("--connectors", type=int, choices=(1, 2), default=1,
                     help="connectors per station (sessions use the first)")
    run.add_argument("--id-tag", default="SIMTAG",
                     help="the id tag every session is authorized with")
    run.add_argument("--signed", action="store_true",
                     help="send OCMF signed meter values (a meter key per station; the"
                          " public keys are in the result)")
    run.add_argument("--pnc", action="store_true",
                     help="ISO 15118 Plug & Charge: 1.6 stations over DataTransfer (OCA"
                          " application note): they report ISO15118PnCEnabled and answer"
                          " the wrapped certificate messages; 2.0.1 stations charge an EV"
                          " whose contract (eMAID: --id-tag) is checked (GetCertificate"
                          "Status, Authorize) and which sends its charging needs and"
                          " schedule (NotifyEVChargingNeeds, NotifyEVChargingSchedule)")
    run.add_argument("--ev-contract-days", type=_positive(int), default=365,
                     help="with --pnc on 2.0.1: days the EV's contract certificate is still"
                          " valid; under 30 the EV asks for an update, 0: it has none and"
                          " asks for one (Get15118EVCertificate Update / Install)")
    run.add_argument("--external-limit", type=_external_limit, default=None,
                     metavar="W[@SOURCE]",
                     help="an external limit on every station from its boot on, in W, set"
                          " by SOURCE: EMS (default), SO (the grid operator) or Other;"
                          " the stations obey it and 2.0.1 ones report it"
                          " (NotifyChargingLimit), and ClearedChargingLimit when it is"
                          " lifted (--external-limit-seconds, or at the end)")
    run.add_argument("--external-limit-seconds", type=_positive(float), default=None,
                     help="lift the external limit after this many seconds (default: at"
                          " the end of the run)")
    run.add_argument("--security-event", type=_security_event, action="append",
                     default=None, metavar="TYPE[:TECHINFO]",
                     help="a security event every station reports once booted, e.g."
                          " TamperDetectionActivated (2.0.1 names; 1.6 stations use the"
                          " whitepaper's); repeat the option for more")
    run.add_argument("--no-startup-event", action="store_true",
                     help="do not report the security event StartupOfTheDevice at the"
                          " first boot")
    run.add_argument("--connect-rate", type=_positive(float), default=200.0,
                     help="new connections per second while the stations start")
    run.add_argument("--local-controller", action="store_true",
                     help="2.0.1 stations act as local controllers: they publish firmware"
                          " images (PublishFirmware) on an HTTP server of their own on"
                          " 127.0.0.1")
    load = sub.add_parser(
        "load", help="back-to-back transaction messages; latency recorded",
        description="Stations that send transaction messages back to back for"
                    " --duration seconds; prints messages per second and latency"
                    " percentiles.", formatter_class=_Help)
    _common(load)
    load.add_argument("--duration", type=_positive(float), default=20.0,
                      help="seconds of load after every station has booted")
    load.add_argument("--connect-rate", type=_positive(float), default=500.0,
                      help="new connections per second while the stations start")
    load.add_argument("--procs", type=_positive(int), default=1,
                      help="processes to spread the stations over (results are merged)")
    load.add_argument("--keep-latencies", action="store_true", help=argparse.SUPPRESS)
    return parser, {"run": run, "load": load}


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default (none for flags and required ones)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.required:
            return action.help
        return super()._get_help_string(action)


def _full_help(parser: _Parser, modes: dict[str, _Parser]) -> str:
    parts = [parser.format_help()]
    for name, mode in modes.items():
        parts.append(f"\n--- python -m chargers_sim {name} ---\n{mode.format_help()}")
    return "".join(parts)


async def _progress(fleet: Fleet, every: float) -> None:
    """One line on stderr now and then while the stations idle (--sessions 0)."""
    while True:
        s = fleet.summary()
        online = sum(st.online for st in fleet.stations)
        sys.stderr.write(f"{online}/{s.stations} online, {s.messages} messages sent,"
                         f" {s.errors} errors (Ctrl-C to stop)\n")
        sys.stderr.flush()
        await asyncio.sleep(every)


def _extras(fleet: Fleet, args: argparse.Namespace) -> asyncio.Task[None]:
    """What the stations do besides charging: the security events asked for, and the
    external limit lifted after --external-limit-seconds."""
    async def run() -> None:
        for kind, info in args.security_event or []:
            for st in fleet.stations:
                await st.security_event(kind, info)
        if args.external_limit is not None and args.external_limit_seconds is not None:
            await asyncio.sleep(args.external_limit_seconds)
            for st in fleet.stations:
                await st.clear_external_limit()

    return asyncio.create_task(run())


async def _lift_limits(fleet: Fleet, args: argparse.Namespace,
                       extra: asyncio.Task[None]) -> None:
    """At the end: what was asked for is done; an external limit still in force is lifted
    before the stations disconnect."""
    if args.external_limit_seconds is None:
        await extra
    else:
        extra.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await extra
    if args.external_limit is not None:
        for st in fleet.stations:
            await st.clear_external_limit()


async def _run(args: argparse.Namespace) -> int:
    fleet = Fleet(
        args.url, args.count, args.ocpp, prefix=args.id_prefix, mix=args.mix,
        password=args.password, seed=args.seed, connect_rate=args.connect_rate,
        meter_interval=args.meter_interval, power_kw=args.power_kw, signed=args.signed,
        connectors=args.connectors, local_controller=args.local_controller, pnc=args.pnc,
        startup_event=not args.no_startup_event, external_limit=args.external_limit,
        ev_contract_days=args.ev_contract_days,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    extra: asyncio.Task[None] | None = None
    try:
        try:
            await fleet.start(fail_fast=True, unreachable_grace=args.unreachable_grace)
        except ConnectFailed as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1
        except TimeoutError:
            offline = [s.station_id for s in fleet.stations if not s.online]
            sys.stderr.write(f"error: {len(offline)} station(s) could not connect and boot at"
                             f" {args.url} (first: {offline[0]})\n")
            return 1
        extra = _extras(fleet, args)
        if args.sessions == 0:
            sys.stderr.write(f"{args.count} station(s) online at {args.url}; --sessions 0:"
                             " no sessions, they stay online until Ctrl-C\n")
            progress = asyncio.create_task(_progress(fleet, PROGRESS_SECONDS))
            try:
                await stop.wait()
            finally:
                progress.cancel()
        else:
            await fleet.run_sessions(args.sessions, args.session_seconds, args.id_tag)
        await _lift_limits(fleet, args, extra)
        summary = fleet.summary()  # the messages of the lifted limits counted
    finally:
        if extra is not None and not extra.done():
            extra.cancel()
        await fleet.close()
    out = summary.as_dict()
    if args.signed:
        out["meter_keys"] = {s.station_id: s.signer.public_key_pem
                             for s in fleet.stations if s.signer is not None}
    if args.json:
        print(json.dumps(out))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="chargers_sim")
        for key in ("stations", "sessions", "kwh", "messages", "errors"):
            table.add_column(key)
        table.add_row(*(str(out[k]) for k in ("stations", "sessions", "kwh", "messages",
                                              "errors")))
        Console().print(table)
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("run", "load", "-h", "--help"):
        argv.insert(0, "run")  # `python -m chargers_sim --url ...` means run
    parser, modes = _parser()
    if argv in (["-h"], ["--help"]):
        sys.stdout.write(_full_help(parser, modes))
        raise SystemExit(0)
    args = parser.parse_args(argv)
    if args.mode == "run":
        raise SystemExit(asyncio.run(_run(args)))
    if args.procs > 1:
        rest = ["--url", args.url, "--ocpp", args.ocpp, "--duration", str(args.duration),
                "--connect-rate", str(args.connect_rate / args.procs), "--seed", str(args.seed),
                "--unreachable-grace", str(args.unreachable_grace)]
        if args.mix:
            rest.append("--mix")
        if args.password:
            rest += ["--password", args.password]
        try:
            result = run_load_procs(rest, args.procs, args.count, args.id_prefix)
        except RuntimeError as exc:
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(1) from None
    else:
        try:
            result = asyncio.run(run_load(
                args.url, args.count, args.ocpp, duration=args.duration,
                connect_rate=args.connect_rate, prefix=args.id_prefix, mix=args.mix,
                password=args.password, seed=args.seed,
                unreachable_grace=args.unreachable_grace))
        except ConnectFailed as exc:
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(1) from None
        except TimeoutError:
            sys.stderr.write(f"error: the stations could not connect and boot at {args.url}"
                             " in time\n")
            raise SystemExit(1) from None
    if not args.keep_latencies:
        result.pop("latencies_ms", None)
    print(json.dumps(result) if args.json else
          " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
