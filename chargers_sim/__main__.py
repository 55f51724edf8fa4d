"""``python -m chargers_sim``: run simulated stations, or generate load.

    python -m chargers_sim --url ws://127.0.0.1:9000 --count 10 --ocpp 2.0.1 --sessions 3
    python -m chargers_sim load --url ws://127.0.0.1:9000 --count 1000 --duration 20 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any, NoReturn

from chargers_sim.fleet import Fleet
from chargers_sim.load import run_load, run_load_procs
from csms.protocol import OcppVersion

__all__ = ["main"]


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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="central system, e.g. ws://127.0.0.1:9000")
    p.add_argument("--count", type=_positive(int), default=1, help="number of stations")
    p.add_argument("--ocpp", type=_version, default="1.6", help="1.6 or 2.0.1")
    p.add_argument("--mix", action="store_true", help="half 1.6, half 2.0.1")
    p.add_argument("--id-prefix", default="SIM", help="station ids are PREFIX00001...")
    p.add_argument("--password", default=None, help="HTTP Basic password (profile 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _parser() -> _Parser:
    parser = _Parser(prog="python -m chargers_sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="stations that charge K times (0: stay online, idle)")
    _common(run)
    run.add_argument("--sessions", type=_positive(int), default=1)
    run.add_argument("--session-seconds", type=_positive(float), default=2.0)
    run.add_argument("--meter-interval", type=_positive(float), default=0.5)
    run.add_argument("--power-kw", type=_positive(float), default=11.0)
    run.add_argument("--connectors", type=int, choices=(1, 2), default=1)
    run.add_argument("--id-tag", default="SIMTAG", help="id tag used for every session")
    run.add_argument("--signed", action="store_true", help="send OCMF signed meter values")
    run.add_argument("--connect-rate", type=_positive(float), default=200.0)
    load = sub.add_parser("load", help="back-to-back transaction messages; latency recorded")
    _common(load)
    load.add_argument("--duration", type=_positive(float), default=20.0)
    load.add_argument("--connect-rate", type=_positive(float), default=500.0)
    load.add_argument("--procs", type=_positive(int), default=1)
    load.add_argument("--keep-latencies", action="store_true", help=argparse.SUPPRESS)
    return parser


async def _run(args: argparse.Namespace) -> int:
    fleet = Fleet(
        args.url, args.count, args.ocpp, prefix=args.id_prefix, mix=args.mix,
        password=args.password, seed=args.seed, connect_rate=args.connect_rate,
        meter_interval=args.meter_interval, power_kw=args.power_kw, signed=args.signed,
        connectors=args.connectors,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await fleet.start()
        except TimeoutError:
            offline = [s.station_id for s in fleet.stations if not s.online]
            sys.stderr.write(f"error: {len(offline)} station(s) could not connect and boot at"
                             f" {args.url} (first: {offline[0]})\n")
            return 1
        if args.sessions == 0:
            await stop.wait()
            summary = fleet.summary()
        else:
            summary = await fleet.run_sessions(args.sessions, args.session_seconds, args.id_tag)
    finally:
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
    args = _parser().parse_args(argv)
    if args.mode == "run":
        raise SystemExit(asyncio.run(_run(args)))
    if args.procs > 1:
        rest = ["--url", args.url, "--ocpp", args.ocpp, "--duration", str(args.duration),
                "--connect-rate", str(args.connect_rate / args.procs), "--seed", str(args.seed)]
        if args.mix:
            rest.append("--mix")
        if args.password:
            rest += ["--password", args.password]
        result = run_load_procs(rest, args.procs, args.count, args.id_prefix)
    else:
        result = asyncio.run(run_load(
            args.url, args.count, args.ocpp, duration=args.duration,
            connect_rate=args.connect_rate, prefix=args.id_prefix, mix=args.mix,
            password=args.password, seed=args.seed))
    if not args.keep_latencies:
        result.pop("latencies_ms", None)
    print(json.dumps(result) if args.json else
          " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
