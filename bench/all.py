"""Every benchmark at full size, one JSON line each (``make bench``)."""

from __future__ import annotations

from bench import connections, settlement_gas, throughput

__all__ = ["main"]


def main() -> None:
    throughput.main(["--stations", "1000", "--duration", "20", "--ocpp", "1.6", "2.0.1",
                     "--postgres", "postgresql://postgres@127.0.0.1:5432/test"])
    throughput.main(["--stations", "100", "5000", "--duration", "20", "--ocpp", "1.6"])
    connections.main(["--stations", "10000"])
    settlement_gas.main(["--sizes", "1", "100", "1000", "10000"])


if __name__ == "__main__":
    main()
