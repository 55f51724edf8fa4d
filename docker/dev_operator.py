"""Create the settlement operator's keystore once and fund it on the development chain.

Development stacks only (docker/compose.yaml): it writes a new random key,
encrypted, with its password next to it, and gives it ether with Anvil's
``anvil_setBalance``. A production operator key comes from a secret store and
is funded by its owner; ``csms contract deploy`` and ``csms settle`` only read it.

Usage: python dev_operator.py FOLDER RPC_URL
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.request
from pathlib import Path

from eth_account import Account

__all__ = ["ensure_operator"]

KEYSTORE = "operator.keystore.json"
PASSWORD = "operator.password"
BALANCE_WEI = 10**22


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ensure_operator(folder: Path, *, scrypt_n: int = 2**18) -> str:
    """The operator's address; the keystore is created on the first call only."""
    key_file, pw_file = folder / KEYSTORE, folder / PASSWORD
    if key_file.exists() and pw_file.exists():
        return "0x" + str(json.loads(key_file.read_text("utf-8"))["address"]).removeprefix("0x")
    folder.mkdir(parents=True, exist_ok=True)
    account = Account.create()
    password = secrets.token_urlsafe(24)
    _write_private(pw_file, password)
    _write_private(key_file, json.dumps(Account.encrypt(account.key, password,
                                                        iterations=scrypt_n)))
    return str(account.address)


def fund(rpc_url: str, address: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance",
                       "params": [address, hex(BALANCE_WEI)]}).encode()
    request = urllib.request.Request(rpc_url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise SystemExit(f"cannot fund {address}: {answer['error']}")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    address = ensure_operator(Path(argv[0]))
    fund(argv[1], address)
    print(f"operator {address} funded on {argv[1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
