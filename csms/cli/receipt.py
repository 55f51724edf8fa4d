"""``csms receipt``: write the receipt of a settled session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from csms.cli.common import CliError, DbOption, console, run, with_repo
from csms.service.ports import Repository

__all__ = ["receipt"]


def receipt(
    session_id: Annotated[int, typer.Argument(metavar="SESSION_ID")],
    output: Annotated[str | None, typer.Option("-o", "--output", help="File to write")] = None,
    db: DbOption = None,
) -> None:
    """Write the receipt of a settled session (JSON)."""
    from settlement.receipts import ReceiptNotReady, load_receipt

    async def go(repo: Repository) -> dict[str, Any]:
        try:
            return await load_receipt(repo, session_id, None)
        except ReceiptNotReady as exc:
            raise CliError(str(exc)) from None

    data = run(with_repo(db, go))
    text = json.dumps(data, indent=2)
    if output:
        Path(output).write_text(text + "\n", "utf-8")
        console.print(f"receipt of session {session_id} written to {output}")
    else:
        print(text)

