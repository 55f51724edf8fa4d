"""``csms receipt``: write the receipt of a settled session."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    MAX_ID,
    CliError,
    DataDirOption,
    DbOption,
    fail,
    load_settings,
    run,
    say,
    with_repo,
)

if TYPE_CHECKING:
    from csms.service.ports import Repository

__all__ = ["receipt"]


def receipt(
    session_id: Annotated[int, typer.Argument(
        metavar="session_id", min=1, max=MAX_ID, help="The session's id (csms sessions list)")],
    output: Annotated[str | None, typer.Option("-o", "--output", help="File to write")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write the receipt of a settled session (JSON)."""
    from csms.protocol.frames import dumps  # an integer beyond 64 bits too
    from settlement.receipts import NotInBatch, ReceiptNotReady, load_receipt

    settings = load_settings(db=db, data_dir=data_dir)
    target = _output(output) if output else None

    async def go(repo: Repository) -> dict[str, Any]:
        try:
            return await load_receipt(repo, session_id, None)
        except NotInBatch as exc:
            raise CliError(f"{exc}: {await _to_settle(repo, session_id)}") from None
        except ReceiptNotReady as exc:
            raise CliError(str(exc)) from None

    data = run(with_repo(settings, go))
    text = dumps(data, indent=True)  # the console's download holds the same bytes
    if target is not None:
        try:
            target.write_text(text + "\n", "utf-8")
        except OSError as exc:
            fail(f"-o {output}: {exc.strerror or exc}")
        say(f"receipt of session {session_id} written to {output}")
    else:
        print(text)



async def _to_settle(repo: Repository, session_id: int) -> str:
    """What brings a session in no batch yet to its receipt, by its billing state."""
    from csms.service.billing import BillingState, billing_state

    session = await repo.read(lambda tx: tx.get_session(session_id))
    state = billing_state(session) if session is not None else None
    if state == BillingState.ACTIVE:
        return "it is still charging; once it stopped, `csms settle run` settles it"
    if state == BillingState.HELD:
        return (f"it is held (csms sessions show {session_id}): `csms sessions release"
                f" {session_id}`, then `csms settle run`")
    if state == BillingState.REJECTED:
        return "it was rejected: never settled, it has no receipt"
    return ("`csms settle run` settles it (or a running `csms settle worker`), then ask"
            " again")


def _output(name: str) -> Path:
    """Where ``-o`` writes: a file in an existing folder (checked before any work)."""
    path = Path(name).expanduser()
    if path.is_dir():
        fail(f"-o {name}: a folder; name a file (e.g. {path / 'receipt.json'})")
    if not path.parent.is_dir():
        fail(f"-o {name}: folder {path.parent} does not exist")
    return path
