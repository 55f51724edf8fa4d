"""Every benchmark at full size, one JSON line each (``make bench``)."""

from __future__ import annotations

from bench import (
    attacks,
    cluster,
    connections,
    first_message,
    fleet,
    round_trips,
    settlement_gas,
    soak,
    throughput,
    tls_state,
    units,
)

__all__ = ["main"]


def main() -> None:
    throughput.main(["--stations", "1000", "--duration", "20", "--ocpp", "1.6", "2.0.1",
                     "--rounds", "3", "--postgres", "postgresql://postgres@127.0.0.1:5432/test"])
    throughput.main(["--stations", "100", "5000", "--duration", "20", "--ocpp", "1.6"])
    connections.main(["--stations", "10000"])
    connections.main(["--stations", "3000", "--tls"])  # TLS's share of a connection
    connections.main(["--stations", "3000", "--interval", "2", "--hold", "40"])  # long-lived
    tls_state.main(["--connections", "3000"])  # ... of which OpenSSL's own state
    fleet.main([])  # realistic fleets grown to the process's socket limit, every server
    round_trips.main(["--stations", "1"])  # PostgreSQL round trips per message type
    round_trips.main(["--stations", "1000"])  # ... and per message of a busy node
    settlement_gas.main(["--json"])  # gas per paid session (3 mixes), 10,000 batch time
    cluster.main(["--stations", "400", "--duration", "20"])
    first_message.main([])  # a restarted worker's first message of each action
    units.main([])  # the write turn: service and storage alone, one process and two
    soak.main([])  # 5,000 idle TLS sockets twice, 30 s of ping flood
    soak.main(["--idle-cost", "--sockets", "3000"])
    attacks.main(["logins", "--attempts", "300"])
    attacks.main(["datatransfer", "--seconds", "20"])


if __name__ == "__main__":
    main()
