"""``csms verify``: check receipts against the chain alone (VALID, INVALID, UNVERIFIED)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from csms.cli.common import RECEIPT_FILE, DataDirOption, fail, load_settings, read_limited, say

__all__ = ["verify"]


def _read_json(path: Path) -> Any:
    """A JSON file read exactly (integers beyond 64 bits too), never nested beyond
    MAX_JSON_DEPTH: the chain libraries raise the interpreter's recursion limit (py_ecc:
    100,000), so the standard library's parser recursed on a deeply nested file until the
    C stack ran out (SIGSEGV, no message); the file is read before they are imported, with
    a limit that lets MAX_JSON_DEPTH levels through. A byte order mark is dropped, as
    the receipt page's File.text() drops it (an editor saving UTF-8 with one: Windows
    Notepad did by default). An object that holds a key twice is refused: each reader of
    such a text picks its own value (a viewer the first, json.loads the last), so the
    receipt would show a figure other than the one verified; the receipt page refuses it
    too (web/verify/src/verifier.js readReceipt). Raises OSError, ValueError."""
    from csms.protocol.frames import MAX_JSON_DEPTH, nested_beyond

    text = read_limited(path, RECEIPT_FILE).decode("utf-8-sig")
    if nested_beyond(text):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, MAX_JSON_DEPTH + 1_000))
    try:
        return json.loads(text, object_pairs_hook=_once)
    except RecursionError:  # a caller's stack deeper than the margin left above
        raise ValueError("nested too deep") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # the interpreter's limit, not JSON's
            raise ValueError(f"a number of more than {sys.get_int_max_str_digits()} digits"
                             " (no figure of a receipt has as many)") from None
        raise
    finally:
        sys.setrecursionlimit(limit)


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each in it once, else ValueError."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} is in one object twice")
        out[key] = value
    return out


def _unchecked(receipt: Any) -> str:
    """Why no node checked ``receipt``, and what to do: the "on chain" check's words."""
    from settlement.receipts import IN_PROCESS_CHAIN_ID

    chain = receipt.get("chain") if isinstance(receipt, dict) else None
    if isinstance(chain, dict) and chain.get("chain_id") == IN_PROCESS_CHAIN_ID:
        return ("no RPC endpoint given: the chain was not checked. This receipt was settled"
                " on the in-process chain (--chain memory), which was gone when the command"
                " that settled it ended: no node holds it, and no --rpc can check it. Only"
                " sessions settled on a real chain (--chain local, or an http(s):// RPC URL)"
                " have receipts that verify")
    return ("no RPC endpoint given: the chain was not checked (give --rpc URL, a node of"
            " the receipt's chain)")


def verify(
    files: Annotated[list[str], typer.Argument(
        metavar="file...", help="Receipts written by csms receipt (several: also checked"
        " against each other for a session billed twice)")],
    rpc: Annotated[str | None, typer.Option(help="JSON-RPC URL of the chain")] = None,
    driver: Annotated[str | None, typer.Option(
        help="Your driver address: the contract must be the one your escrow is in")] = None,
    contract: Annotated[str | None, typer.Option(
        help="The contract you trust (instead of --driver)")] = None,
    card: Annotated[list[str] | None, typer.Option(
        metavar="TAG:SALT", help="One of your cards and the salt you linked it with (csms"
        " wallet link-card printed it), with --driver: a card session charged to you must"
        " be one of these (repeat for each card)")] = None,
    log_window: Annotated[int, typer.Option(
        min=1, help="The widest block range of one eth_getLogs, where the node keeps no"
        " state of the settle block (narrower where the node refuses it)")] = 10_000,
    confirmations: Annotated[int | None, typer.Option(
        min=1, help="Confirmations the settle transaction must have for VALID (its block"
        " and the blocks on top of it; fewer: UNVERIFIED, the block can still be reorganised"
        " away). Default: 1 on a local test chain (Anvil, Hardhat, Ganache, py-evm), 64 on"
        " any other (two epochs: when a block of Ethereum is final)")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Check receipts against the chain alone: exit 0 VALID, 1 INVALID, 3 UNVERIFIED (the
    chain could not be reached, which contract is the real one is not known, the settle
    block is not deep enough, or the node is the one the receipt names).

    The settle block is deep enough with --confirmations (by default 1 on a local test
    chain, 64 on any other). --rpc is the node you choose: the one the receipt names
    (chain.rpc_hint) is its operator's, which can answer anything."""
    from settlement.receipts import (
        INVALID,
        VALID,
        ReceiptError,
        check_receipt,
        duplicates,
        hex32,
        verify_receipt,
    )

    for value, name in ((driver, "--driver"), (contract, "--contract")):
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise typer.BadParameter("an address is 0x and 40 hex digits", param_hint=name)
    cards: list[tuple[str, str]] = []
    for value in card or []:
        tag, _, salt = value.rpartition(":")
        if not tag or hex32(salt) is None:
            raise typer.BadParameter("TAG:SALT, the salt 0x and 64 hex digits",
                                     param_hint="--card")
        cards.append((tag, salt))
    if cards and driver is None:
        raise typer.BadParameter("a card is checked against your escrow: give --driver too",
                                 param_hint="--card")
    receipts: list[Any] = []
    for file in files:
        try:
            receipts.append(_read_json(Path(file)))
        except (OSError, ValueError) as exc:
            fail(f"cannot read receipt {file}: {exc}")
        try:
            check_receipt(receipts[-1])  # all of them before any verdict
        except ReceiptError as exc:
            fail(f"{file}: {exc}")
    # the chain's libraries only once the receipts are read: a file that is none is said at once
    from settlement.chain import AnvilNode, ChainError, recorded_deployments, rpc_client

    settings = load_settings(data_dir=data_dir)
    node = None
    w3: Any = None
    if rpc:
        w3 = rpc_client(rpc)
    else:
        deployments = Path(settings.data_dir).expanduser() / "chain.json"
        first = receipts[0] if isinstance(receipts[0], dict) else {}
        chain = first.get("chain")
        chain_id = str(chain.get("chain_id") if isinstance(chain, dict) else None)
        known = recorded_deployments(settings.data_dir)
        recorded = known.get(chain_id, {}).get("contract")
        if driver is None and contract is None and recorded:
            # the operator checking its own receipts: the contract it deployed
            contract = str(recorded)
            say(f"trusting contract {contract}, the one recorded in {deployments}"
                " (a driver passes --driver ADDRESS instead)", soft_wrap=True)
        if known.get(chain_id, {}).get("kind") == "local":
            # the running node of a `csms serve --chain local`, or one of our own
            try:
                node = AnvilNode(Path(settings.data_dir).expanduser() / "anvil-state.json",
                                 attach=True)
                w3 = rpc_client(node.url)
            except ChainError as exc:
                say(f"the local chain could not be started: {exc}")
    statuses = []
    try:
        for file, data in zip(files, receipts, strict=True):
            try:
                verdict = verify_receipt(data, w3, driver=driver, contract=contract,
                                         cards=cards, log_window=log_window,
                                         confirmations=confirmations, rpc_url=rpc,
                                         unchecked=_unchecked(data))
            except ReceiptError as exc:
                fail(f"{file}: {exc}")
            if len(files) > 1:
                say((file, "bold"))
            for check in verdict.checks:
                mark = {True: ("ok", "green"), False: ("FAIL", "bold red"),
                        None: ("??", "yellow")}[check.ok]
                # a receipt's text: no markup; one line, however long (the terminal wraps it)
                say(mark, f"  {check.name}: {check.detail}", soft_wrap=True)
            say(f"what this proves: {verdict.proves}")
            color = {VALID: "green", INVALID: "red"}.get(verdict.status, "yellow")
            say((verdict.status, f"bold {color}"), " receipt")
            statuses.append(verdict.status)
    finally:
        if node is not None:
            node.stop()
    twice = duplicates(receipts) if len(receipts) > 1 else []
    for line in twice:
        say(("FAIL", "bold red"), f"  billed twice: {line}")
    if twice or INVALID in statuses:
        raise typer.Exit(1)
    if any(s != VALID for s in statuses):
        raise typer.Exit(3)
