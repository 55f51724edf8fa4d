"""``csms settle run`` that kills itself with SIGKILL at one point of settling a batch.

    python tests/support/crashing_settle.py POINT settle run --db ... --data-dir ...

POINT is a batch state the run dies right after reaching (``pending``, ``signed``,
``broadcast``, ``included``, ``finalized``) or ``sent``: the anchor transaction
handed to the node, the database not yet told. Everything else is the real
command, with its managed Anvil node.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from settlement.chain import Chain
from settlement.states import BatchState
from settlement.worker import SettlementWorker

POINTS = ("pending", "signed", "sent", "broadcast", "included", "finalized")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    if point == "pending":
        build = SettlementWorker.build_batches

        async def build_then_die(self: SettlementWorker, force: bool = False) -> tuple[int, int]:
            created = await build(self, force)
            if created[0]:
                die()
            return created

        SettlementWorker.build_batches = build_then_die  # type: ignore[method-assign]
    elif point == "sent":
        broadcast = Chain.broadcast

        def broadcast_then_die(self: Chain, raw_tx: str) -> None:
            broadcast(self, raw_tx)
            die()

        Chain.broadcast = broadcast_then_die  # type: ignore[method-assign]
    else:
        target = BatchState(point)
        move = SettlementWorker._move

        async def move_then_die(self: SettlementWorker, batch: dict[str, Any],
                                new: BatchState, **fields: Any) -> None:
            await move(self, batch, new, **fields)
            if new is target:
                die()

        SettlementWorker._move = move_then_die  # type: ignore[method-assign]


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in POINTS:
        sys.exit(f"usage: crashing_settle.py {'|'.join(POINTS)} settle run ...")
    arm(sys.argv[1])
    from csms.cli import main

    sys.argv = ["csms", *sys.argv[2:]]
    main()
