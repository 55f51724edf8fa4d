"""The EVM chain adapter: an in-process py-evm chain, a managed Anvil node, or any JSON-RPC node.

The only module that imports web3 / eth-tester. Calls are synchronous (web3's
sync API); the worker runs them in a thread.

* ``memory``: py-evm in-process (eth-tester); gone when the process ends, so
  receipts verify only inside that process (tests, one-process demos).
* ``local`` (default): a managed Anvil node on loopback, its state saved in the
  data folder every second and on exit, so the contract and every anchored root
  survive restarts; the operator key is an encrypted V3 keystore in the folder.
* ``http(s)://`` / ``ws(s)://``: any node; the operator key comes from an
  encrypted V3 keystore file and a password file (never a plain key in config).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_typing import URI, ChecksumAddress, HexStr
from web3 import HTTPProvider, Web3
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3Exception
from web3.logs import DISCARD
from web3.providers.rpc.utils import check_if_retry_on_failure
from web3.types import RPCEndpoint, TxParams, Wei

from csms.config import read_limited
from settlement.anvil_guard import process_alive
from settlement.contract import compiled

__all__ = [
    "AnvilNode",
    "Chain",
    "ChainError",
    "ContractMissing",
    "ContractParams",
    "DriverState",
    "Settled",
    "SettlementReader",
    "Terms",
    "TxReceipt",
    "address_topic",
    "event_topic",
    "find_anvil",
    "open_chain",
    "recorded_deployments",
    "rpc_client",
]

log = logging.getLogger("settlement.chain")

NOTICE_PERIOD_S = 7 * 24 * 3600
ZERO_ADDRESS = "0x" + "00" * 20


# settle(ledger, first_seq, entries, auths), as Settlement.vy declares it
SETTLE_TYPES = ("uint256", "uint256", "(bytes32,uint256)[]", "(uint256,bytes32,bytes32)[]")
SETTLE_SELECTOR = keccak(f"settle({','.join(SETTLE_TYPES)})".encode())[:4]
# the events that tell a driver's index and cards at a block a node keeps no state of
DRIVER_REGISTERED = "DriverRegistered(address,uint256)"
CARD_LINKED = "CardLinked(address,bytes32,bool)"
TERMS_SET = "TermsSet(address,uint256,uint256)"

# The widest eth_getLogs window a verifier asks for first: public nodes and providers
# commonly allow 10,000 blocks at most (Infura, QuickNode, geth's --rpc.rangelimit ...).
LOG_WINDOW = 10_000
# How nodes and providers refuse an eth_getLogs for the width of its block range or the
# number of its results; the verifier then asks again for half the range. Read in the
# error's message (and its data, where Tenderly puts it; a body with an HTTP error status,
# as QuickNode answers, too):
#   geth, Infura (documented): "query returned more than 10000 results" (-32005)
#   geth --rpc.rangelimit, bor: "exceed maximum block range: 1000"
#   Erigon --rpc.blockrange.limit / --rpc.logs.maxresults: "query block range exceeds
#     server limit, narrow your filter: 1000", "query returns too many logs, narrow your
#     filter: 20000" (-32602; -32000 before 3.4); cdk-erigon: "block range too large"
#   reth: "query exceeds max block range 100000", "query exceeds max results 20000, ..."
#   Besu --rpc-max-logs-range: "Requested range exceeds maximum RPC range limit" (-32005)
#   Infura (live): "range 1000000 exceeds limit of 10000" (-32602)
#   Alchemy: "Log response size exceeded. ..." (-32602)
#   QuickNode: "eth_getLogs is limited to a 10,000 range" (-32614, HTTP 413)
#   Tenderly: "range 9009594 is bigger than range limit 2000" (in the error's data)
#   Moonbeam, Ankr: "block range is too wide (maximum 1024)"; others "block range too
#     high", "block range is larger than max block range"
# and any error of code -32005 (EIP-1474 "limit exceeded": a query that took too long
# too) but a rate limit (RATE_LIMITED: Infura's "daily request count exceeded, request rate
# limited" has that code; a narrower query is refused all the same, and costs the driver's
# quota). Anything else (a node down, "missing trie node", a rate limit) is not asked
# again: the logs could not be read. web/verify/src/chain.js reads the same.
LOG_RANGE_REFUSED = re.compile(
    r"more than [\d,]+ results|max(imum)? (rpc )?(block )?range|range limit"
    r"|exceeds? (the |server )?limit|range (is )?too (large|wide|big|high)"
    r"|narrow your filter|max(imum)? results|response size|limited to a [\d,]+"
    r"|too many (logs|results|blocks)",
    re.IGNORECASE)
LIMIT_EXCEEDED = -32005
RATE_LIMITED = re.compile(
    r"rate.?limit|request rate|too many requests|request count|requests per"
    r"|compute units|credits|quota|capacity",
    re.IGNORECASE)


def event_topic(signature: str) -> str:
    """The first topic of an event's logs: the keccak of its signature, e.g.
    ``Settled(uint256,uint256,uint256,bytes32,uint256,uint256)``, as 0x and 64 hex digits."""
    return "0x" + bytes(keccak(signature.encode())).hex()


def address_topic(address: str) -> str:
    """An indexed address as a log's topic: 0x and the address's 40 hex digits, lower
    case, padded to 64."""
    return "0x" + address[2:].lower().rjust(64, "0")


def log_range_refused(code: Any, message: str) -> bool:
    """Whether a node's error to eth_getLogs refuses the width of the query (its block
    range or its number of results): a narrower one may be served. A rate limit is not:
    a narrower query would be refused the same."""
    if RATE_LIMITED.search(message) is not None:
        return False
    return code == LIMIT_EXCEEDED or LOG_RANGE_REFUSED.search(message) is not None

class ChainError(Exception):
    pass


class ContractMissing(ChainError):
    """The recorded contract has no code: the chain was reset. Nothing is re-anchored."""


@dataclass(frozen=True)
class TxReceipt:
    block_number: int
    block_hash: str
    status: int
    gas_used: int


_NPM_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def find_anvil() -> str | None:
    """The Anvil executable: the binary of ``make install``'s npm package, else ``anvil`` on
    the PATH.

    Not npm's ``.bin/anvil``: that is a Node launcher which passes SIGTERM on to the binary
    and exits at once, so the guard waiting for it saw the node gone while Anvil still
    wrote its state (and the launcher was one more process to stop)."""
    import platform

    scope = Path(__file__).resolve().parents[1] / ".tools" / "node_modules" / "@foundry-rs"
    system = "darwin" if sys.platform == "darwin" else "linux"
    arch = _NPM_ARCH.get(platform.machine().lower(), platform.machine().lower())
    for binary in (scope / f"anvil-{system}-{arch}" / "bin" / "anvil",
                   scope / "anvil" / "dist" / "anvil"):
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    launcher = scope.parent / ".bin" / "anvil"
    if launcher.exists():
        return str(launcher)
    return shutil.which("anvil")


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands out as the source port of an outgoing connection
    (and to a bind to port 0)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default (FreeBSD and macOS start at 49152)


def free_local_port() -> int:
    """A loopback port nothing listens on, for a process started next to bind.

    Chosen below the ephemeral range, at random, not by binding port 0: a port the
    kernel gave out from that range is free again the moment it is checked, and the next
    outgoing connection on the machine may take it as its source port before the process
    binds it (it then exits with "address already in use"). Ports below the range are
    never taken that way; two callers choosing the same one at the same moment is left
    to chance (1 in ~20,000)."""
    top = _ephemeral_floor()
    low = 10000 if top > 12000 else 1024
    for _ in range(200):
        port = random.randrange(low, top)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use
            return port
    with socket.socket() as s:  # the range below is full: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AnvilNode:
    """An Anvil process on loopback with its state persisted in ``state_file``.

    It never outlives this process: it runs under :mod:`settlement.anvil_guard`,
    which stops it (Anvil saves its state on SIGTERM) as soon as this process
    ends, ``kill -9`` included. A pid file next to the state file names the node
    and its owner; at start, a node left behind by an owner that is gone is
    stopped first (it writes its state), and one whose owner still runs is not
    started twice on the same state: ``attach=True`` uses it (e.g. to verify a
    receipt while ``csms serve --chain local`` runs), otherwise it is an error. Processes
    starting at once take turns (:func:`_starting`): two that both found no node would
    each start one on the same state, and the one stopped last would write its state over
    what the other's chain holds (chunks anchored, escrows debited).

    ``prune_history``: keep the state of that many latest blocks only, as a full
    (non-archive) node does (``eth_call`` at an older block is refused; the logs are kept).
    """

    def __init__(self, state_file: Path | None = None, port: int | None = None, *,
                 attach: bool = False, prune_history: int | None = None) -> None:
        binary = find_anvil()
        if binary is None:
            raise ChainError("anvil not found: run `make install` (npm @foundry-rs/anvil)")
        self.state_file = state_file
        self.pidfile = None if state_file is None else \
            state_file.with_name(state_file.name + ".pid")
        self.owned = True
        self.proc: subprocess.Popen[bytes] | None = None
        with _starting(self.pidfile):
            self._start(binary, port, attach, prune_history)

    def _start(self, binary: str, port: int | None, attach: bool,
               prune_history: int | None) -> None:
        state_file = self.state_file
        if self.pidfile is not None:
            running = _running_node(self.pidfile)
            if running is not None and running.owner_alive:
                if not attach:
                    raise ChainError(
                        f"the local chain {state_file} is in use by process {running.owner}"
                        " (another csms serve or settle run); stop it first")
                self.owned = False
                self.port = running.port
                self.url = f"http://127.0.0.1:{self.port}"
                return
            if running is not None:
                running.stop()  # left behind by a killed owner: let it write its state
        self.port = port or free_local_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [binary, "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if state_file is not None:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            args += ["--state", str(state_file), "--state-interval", "1"]
        if prune_history is not None:
            args += ["--prune-history", str(prune_history)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "settlement.anvil_guard",
             str(self.pidfile) if self.pidfile is not None else "-", str(os.getpid()), "--",
             *args],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # its own session: a Ctrl-C at the terminal reaches the owner, which stops
            # the node in order, not the node itself mid-write
            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChainError(f"anvil exited with code {self.proc.returncode}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                # and its pid file names it: the next process to start reads it
                named = None if self.pidfile is None else _running_node(self.pidfile)
                if self.pidfile is None or (named is not None
                                            and named.guard == self.proc.pid):
                    return
            time.sleep(0.05)
        self.stop()
        raise ChainError("anvil did not start within 30 s")

    def stop(self) -> None:
        """Stop the node and wait until it has written its state (not one we attached to)."""
        proc = self.proc
        if proc is None or not self.owned:
            return
        if proc.poll() is None:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the guard stops anvil (SIGTERM: it saves its state)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()  # anvil then gets SIGTERM from the kernel (parent death)
                proc.wait()


@contextlib.contextmanager
def _starting(pidfile: Path | None) -> Iterator[None]:
    """Hold the start of a node on ``pidfile``'s state (a look at the pid file, a node
    started and named there) to one process at a time: a lock beside the pid file, which
    the kernel drops when its process ends, however it ends."""
    if pidfile is None:
        yield
        return
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(pidfile.with_name(pidfile.name + ".lock"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _RunningNode:
    """An Anvil process named in a pid file, still alive."""

    anvil: int
    guard: int
    owner: int
    port: int

    @property
    def owner_alive(self) -> bool:
        return self.owner != os.getpid() and process_alive(self.owner)

    def stop(self, wait: float = 40.0) -> None:
        log.warning("! stopping the Anvil node %d left behind by process %d", self.anvil,
                    self.owner)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.anvil, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while process_alive(self.anvil) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(self.anvil):
            log.error("! Anvil %d did not stop; killed (its last state may be lost)",
                      self.anvil)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.anvil, signal.SIGKILL)


def _running_node(pidfile: Path) -> _RunningNode | None:
    """The node a pid file names, if that process still runs Anvil on this state."""
    try:
        record = json.loads(pidfile.read_text("utf-8"))
        anvil, command = int(record["anvil"]), [str(a) for a in record["command"]]
        node = _RunningNode(anvil, int(record["guard"]), int(record["parent"]),
                            int(command[command.index("--port") + 1]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not process_alive(anvil):
        return None
    cmdline = Path(f"/proc/{anvil}/cmdline")
    state = command[command.index("--state") + 1] if "--state" in command else "anvil"
    with contextlib.suppress(OSError):
        # the pid may have been reused by another program since
        if state not in cmdline.read_bytes().decode(errors="replace"):
            return None
    return node


def _load_keystore(path: Path, password: str) -> LocalAccount:
    try:
        data = json.loads(read_limited(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ChainError(f"cannot read keystore {path}: {exc}") from None
    try:
        key = Account.decrypt(data, password)
    except ValueError as exc:
        raise ChainError(f"cannot decrypt keystore {path}: {exc}") from None
    acct: LocalAccount = Account.from_key(key)
    return acct


# The managed local chain's keystore is encrypted under a password kept beside it in the
# same folder, both mode 0600: a key derivation that costs an attacker nothing more, since
# the password is there to read. It is a V3 keystore (a wallet imports it with that
# password) with one PBKDF2 round, not eth_account's default scrypt: that cost ~0.65 s of
# CPU at the key's creation and again at every open (each `csms settle`, `csms verify`,
# `csms serve --chain local`). Keystores written with scrypt before open as they are.
_MANAGED_KDF: dict[str, Any] = {"kdf": "pbkdf2", "iterations": 1}


def _managed_keystore(folder: Path) -> LocalAccount:
    """The local chain's operator key: generated once, stored encrypted (mode 0600) beside
    its password (:data:`_MANAGED_KDF`)."""
    key_file, pw_file = folder / "operator.keystore.json", folder / "operator.password"
    if key_file.exists() and pw_file.exists():
        return _load_keystore(key_file, pw_file.read_text("utf-8").strip())
    folder.mkdir(parents=True, exist_ok=True)
    acct: LocalAccount = Account.create()
    password = secrets.token_urlsafe(24)
    for path, text in ((pw_file, password),
                       (key_file, json.dumps(Account.encrypt(acct.key, password,
                                                             **_MANAGED_KDF)))):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return acct


@dataclass(frozen=True)
class Terms:
    """What a driver accepts, in billing units (see Settlement.vy ``set_terms``)."""

    max_per_kwh: int
    max_per_minute: int
    max_session_fee: int
    max_per_session: int
    max_per_day: int
    allow_cards: bool

    @classmethod
    def unpack(cls, t: int) -> Terms:
        m24, m32 = 2**24 - 1, 2**32 - 1
        return cls(t & m24, t >> 24 & m24, t >> 48 & m24, t >> 72 & m32, t >> 104 & m32,
                   bool(t >> 136 & 1))


def _higher_terms(a: int, b: int) -> int:
    """Each field of two packed terms the higher (Settlement.vy ``set_terms``)."""
    out = (a | b) & 2**136  # cards allowed
    for shift, bits in ((0, 24), (24, 24), (48, 24), (72, 32), (104, 32)):
        mask = 2**bits - 1
        out |= max(a >> shift & mask, b >> shift & mask) << shift
    return out


@dataclass(frozen=True)
class DriverState:
    """A driver's escrow and terms as the contract holds them (billing units)."""

    index: int  # 0: not a driver
    balance: int
    spent_today: int
    terms: Terms
    pending_terms: Terms | None  # lower terms announced, applying from pending_from
    pending_from: int
    withdrawal_amount: int  # announced, available from withdrawal_at
    withdrawal_at: int

    @classmethod
    def from_call(cls, values: tuple[int, ...]) -> DriverState:
        index, balance, spent, terms, pending, withdrawal = (int(v) for v in values)
        return cls(index, balance, spent, Terms.unpack(terms),
                   Terms.unpack(pending & (2**138 - 1)) if pending else None,
                   pending >> 160, withdrawal & (2**64 - 1), withdrawal >> 64)

    def terms_ahead(self, now: int) -> Terms:
        """The terms a session starting now may rely on: the lower of the current ones and
        any announced lower ones (those apply before it is settled)."""
        if self.pending_terms is None:
            return self.terms
        p, t = self.pending_terms, self.terms
        return Terms(min(p.max_per_kwh, t.max_per_kwh), min(p.max_per_minute, t.max_per_minute),
                     min(p.max_session_fee, t.max_session_fee),
                     min(p.max_per_session, t.max_per_session),
                     min(p.max_per_day, t.max_per_day), p.allow_cards and t.allow_cards)


@dataclass(frozen=True)
class Settled:
    """What a settle transaction did, read from its events."""

    ledger: int
    first_seq: int
    count: int
    digest: str  # the hash chain over the chunk's entries
    paid: int
    unpaid: dict[int, int]  # seq -> reason (see Settlement.vy)


class Chain:
    """The settlement contract on one chain, operated by one key."""

    def __init__(self, w3: Web3, operator: LocalAccount, kind: str,
                 cache_dir: Path | None = None, node: AnvilNode | None = None) -> None:
        self.w3 = w3
        self.operator = operator
        self.kind = kind
        self.node = node
        self.artifact = compiled(cache_dir)
        self.chain_id = int(w3.eth.chain_id)
        self.contract_address: str | None = None
        # the transaction that created the contract (receipts name it: a verifier checks
        # it ran Settlement's own creation code); None for a contract recorded without it
        self.deploy_tx: str | None = None
        # one sender at a time: a nonce read from the node is only ours until it is sent
        self._sending = threading.RLock()
        self.rpc_url = node.url if node is not None else getattr(w3.provider, "endpoint_uri",
                                                                 None)
        # reads the contract's logs in windows the node serves (card_link_changes)
        self._reader: SettlementReader | None = None
        # the billing unit (currency, decimals) the contract's deployment was recorded with
        # (chain.json: the contract knows none); None: recorded without one
        self.billing: tuple[str, int] | None = None

    # -- contract ------------------------------------------------------------------
    @property
    def contract(self) -> Any:
        if self.contract_address is None:
            raise ChainError("no contract deployed")
        return self.w3.eth.contract(address=cast(ChecksumAddress, self.contract_address),
                                    abi=self.artifact["abi"])

    def deploy(self, notice_period: int = NOTICE_PERIOD_S, token: str | None = None,
               unit: int = 1, platform: str | None = None, fee_bps: int = 0) -> str:
        """Deploy the contract: escrows in ``token`` (an ERC-20) or the native coin; amounts
        in billing units of ``unit`` token base units; ``fee_bps`` of each payment to
        ``platform`` (the operator by default)."""
        factory = self.w3.eth.contract(abi=self.artifact["abi"],
                                       bytecode=self.artifact["bytecode"])
        token_address = Web3.to_checksum_address(token) if token else ZERO_ADDRESS
        platform_address = Web3.to_checksum_address(platform) if platform else ZERO_ADDRESS
        with self._sending:
            tx = factory.constructor(notice_period, token_address, unit, platform_address,
                                     fee_bps).build_transaction(self._tx_base())
            receipt = self._send(tx)
        self.contract_address = str(receipt["contractAddress"])
        self.deploy_tx = "0x" + bytes(receipt["transactionHash"]).hex()
        return self.contract_address

    def use(self, address: str, deploy_tx: str | None = None) -> None:
        self.contract_address = Web3.to_checksum_address(address)
        self.deploy_tx = deploy_tx
        self.check_contract()

    def check_contract(self) -> None:
        assert self.contract_address is not None
        if not self.w3.eth.get_code(cast(ChecksumAddress, self.contract_address)):
            raise ContractMissing(
                f"no contract code at {self.contract_address} on chain {self.chain_id}:"
                " the chain was reset. Existing receipts no longer verify on it; deploy a new"
                " contract explicitly (csms contract deploy) — nothing is re-anchored silently."
            )

    def info(self, block: int | None = None) -> dict[str, Any]:
        """The contract's parties and figures at the end of ``block`` (None: the latest)."""
        f = self.contract.functions
        at: Any = "latest" if block is None else block
        token = str(f.token().call(block_identifier=at))
        return {"address": self.contract_address, "chain_id": self.chain_id,
                "operator": str(f.operator().call(block_identifier=at)),
                "platform": str(f.platform().call(block_identifier=at)),
                "fee_bps": int(f.fee_bps().call(block_identifier=at)),
                "unit": int(f.unit().call(block_identifier=at)),
                "notice_period": int(f.notice_period().call(block_identifier=at)),
                "token": None if int(token, 16) == 0 else token.lower()}

    def token_decimals(self) -> int | None:
        """The decimals of what the escrows hold: the ERC-20 token's ``decimals()``, or the
        native coin's 18; None for a token without the optional ``decimals()`` (its
        receipts' decimals are not told, :func:`settlement.receipts._misread_decimals`)."""
        token = self.info()["token"]
        if token is None:
            return 18
        erc20 = self.w3.eth.contract(address=Web3.to_checksum_address(token),
                                     abi=ERC20_DECIMALS_ABI)
        try:
            return int(erc20.functions.decimals().call())
        except Exception:
            return None

    # -- transactions ----------------------------------------------------------------
    def _tx_base(self, nonce: int | None = None) -> dict[str, Any]:
        max_fee, tip = self.fees()
        return {"from": self.operator.address, "chainId": self.chain_id,
                "nonce": self.next_nonce() if nonce is None else nonce,
                "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}

    def _send(self, tx: dict[str, Any], account: LocalAccount | None = None) -> Any:
        signer = account or self.operator
        tx.setdefault("gas", int(self.w3.eth.estimate_gas(cast(TxParams, tx)) * 1.2) + 10_000)
        signed = signer.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise ChainError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def transact(self, account: LocalAccount, function: str, *args: Any,
                 value: int = 0) -> Any:
        """Call a contract function as ``account`` (a driver, a host) and wait for it."""
        max_fee, tip = self.fees()
        with self._sending:
            tx = getattr(self.contract.functions, function)(*args).build_transaction({
                "from": account.address, "chainId": self.chain_id, "value": Wei(value),
                "nonce": int(self.w3.eth.get_transaction_count(account.address, "pending")),
                "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip})
            return self._send(tx, account)

    def fees(self) -> tuple[int, int]:
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas") or 1_000_000_000)
        tip = 1_000_000_000
        return 2 * base + tip, tip

    def next_nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(self.operator.address, "pending"))

    def mined_nonce(self) -> int:
        """The operator's next nonce as mined blocks see it: lower nonces are used for good."""
        return int(self.w3.eth.get_transaction_count(self.operator.address, "latest"))

    def sign_call(self, function: str, args: tuple[Any, ...], nonce: int, max_fee: int,
                  tip: int, gas: int) -> tuple[str, str]:
        """A raw signed call of the contract and its hash."""
        tx = getattr(self.contract.functions, function)(*args).build_transaction({
            "from": self.operator.address, "chainId": self.chain_id, "nonce": nonce,
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "gas": gas})
        signed = self.operator.sign_transaction(tx)
        return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()

    @staticmethod
    def settle_calldata(ledger: int, first_seq: int, entries: list[tuple[bytes, int]],
                        auths: list[tuple[int, bytes, bytes]]) -> bytes:
        """The settle call's data, encoded directly (web3's contract encoder takes ~10x
        longer for a chunk of 1,000 entries; a test checks both agree)."""
        return SETTLE_SELECTOR + abi_encode(SETTLE_TYPES, (ledger, first_seq, entries, auths))

    def settle_gas(self, ledger: int, first_seq: int, entries: list[tuple[bytes, int]],
                   auths: list[tuple[int, bytes, bytes]]) -> int:
        """Gas to sign a settle transaction with: estimated by the node, with a margin."""
        data = self.settle_calldata(ledger, first_seq, entries, auths)
        try:
            estimate = int(self.w3.eth.estimate_gas(cast(TxParams, {
                "from": self.operator.address, "to": self.contract.address,
                "data": "0x" + data.hex()})))
        except Exception as exc:  # a revert: the ledger moved, or another state problem
            raise ChainError(f"settle would fail: {exc}") from None
        return estimate * 5 // 4 + 50_000

    def sign_settle(self, ledger: int, first_seq: int, entries: list[tuple[bytes, int]],
                    auths: list[tuple[int, bytes, bytes]], nonce: int, max_fee: int,
                    tip: int, gas: int) -> tuple[str, str]:
        data = self.settle_calldata(ledger, first_seq, entries, auths)
        signed = self.operator.sign_transaction({
            "type": 2, "chainId": self.chain_id, "nonce": nonce, "to": self.contract.address,
            "value": 0, "data": data, "gas": gas, "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip})
        return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()

    def register_ledger(self, ledger: int) -> None:
        with self._sending:
            if self.ledger_next(ledger) == 0:
                self._send(self.contract.functions.register_ledger(ledger).build_transaction(
                    self._tx_base()))

    def register_station(self, max_power_w: int, account: LocalAccount | None = None) -> int:
        """Register a station (as its host: the operator unless ``account`` is given)."""
        receipt = self.transact(account or self.operator, "register_station", max_power_w)
        [event] = self.contract.events.StationRegistered().process_receipt(
            receipt, errors=DISCARD)
        return int(event["args"]["station"])

    # -- reads -----------------------------------------------------------------------
    def ledger_next(self, ledger: int) -> int:
        return int(self.contract.functions.ledger_next(ledger).call())

    def chunk_digest(self, ledger: int, first_seq: int) -> str:
        return "0x" + bytes(self.contract.functions.chunk_digest(ledger, first_seq).call()).hex()

    def driver_state(self, driver: str, block: int | None = None) -> DriverState:
        """The driver's escrow and terms at the end of ``block`` (None: the latest)."""
        return DriverState.from_call(tuple(self.contract.functions.driver_state(
            Web3.to_checksum_address(driver)).call(
                block_identifier="latest" if block is None else block)))

    def nonce_used(self, driver: str, nonce: int) -> bool:
        """Whether a settled session of ``driver`` used up its authorization's ``nonce``."""
        return bool(self.contract.functions.nonce_used(Web3.to_checksum_address(driver),
                                                       nonce).call())

    def station(self, index: int) -> tuple[str, int]:
        host, power = self.contract.functions.station(index).call()
        return str(host), int(power)

    def card_linked(self, driver_index: int, commitment: bytes) -> bool:
        return bool(self.contract.functions.cards(driver_index, commitment).call())

    def card_link_changes(self, driver: str, commitment: bytes) -> list[tuple[int, bool]]:
        """Every change of the card's link (its commitment) to the driver, from the
        contract's CardLinked events up to the latest block, oldest first: (its block's
        timestamp, linked). Raises when a window of the logs cannot be read (one left out
        could hide the change that decides)."""
        if self._reader is None or self._reader.address.lower() \
                != str(self.contract_address).lower():
            reader = SettlementReader(self.w3, str(self.contract.address))
            if self.deploy_tx is not None:  # no log of the contract is older
                reader.first_block = int(self.w3.eth.get_transaction_receipt(
                    HexStr(self.deploy_tx))["blockNumber"])
            self._reader = reader
        return self._reader.card_link_changes(driver, commitment, self.block_number())

    def settled(self, tx_hash: str) -> Settled | None:
        """The Settled and Unpaid events of a settle transaction (None if it has none)."""
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        events = self.contract.events.Settled().process_receipt(receipt, errors=DISCARD)
        if not events:
            return None
        a = events[0]["args"]
        unpaid = {int(e["args"]["seq"]): int(e["args"]["reason"])
                  for e in self.contract.events.Unpaid().process_receipt(receipt,
                                                                          errors=DISCARD)}
        return Settled(int(a["ledger"]), int(a["first_seq"]), int(a["count"]),
                       "0x" + bytes(a["root"]).hex(), int(a["paid"]), unpaid)

    def find_settlement(self, ledger: int, first_seq: int) -> tuple[str, int, str] | None:
        """(tx hash, block number, block hash) of the transaction that settled a chunk,
        from the contract's own Settled event (None if the chain has none)."""
        topic = "0x" + bytes(keccak(
            b"Settled(uint256,uint256,uint256,bytes32,uint256,uint256)")).hex()
        logs = self.w3.eth.get_logs({
            "address": cast(ChecksumAddress, self.contract_address), "fromBlock": 0,
            "toBlock": "latest",
            "topics": [HexStr(topic), HexStr("0x" + ledger.to_bytes(32, "big").hex()),
                       HexStr("0x" + first_seq.to_bytes(32, "big").hex())]})
        if not logs:
            return None
        log_entry = logs[-1]
        return ("0x" + bytes(log_entry["transactionHash"]).hex(),
                int(log_entry["blockNumber"]), "0x" + bytes(log_entry["blockHash"]).hex())

    def broadcast(self, raw_tx: str) -> None:
        """Send a raw transaction; a node that already knows it is not an error."""
        try:
            self.w3.eth.send_raw_transaction(HexStr(raw_tx))
        except Exception as exc:  # JSON-RPC error object, or py-evm's validation error
            tx_hash = "0x" + bytes(keccak(bytes.fromhex(raw_tx.removeprefix("0x")))).hex()
            if self.receipt(tx_hash) is not None or self.known(tx_hash):
                log.info("= transaction %s already known to the node", tx_hash)
                return
            raise ChainError(f"broadcast refused: {exc}") from None

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            r = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return TxReceipt(int(r["blockNumber"]), "0x" + bytes(r["blockHash"]).hex(),
                         int(r["status"]), int(r["gasUsed"]))

    def known(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    def block_hash(self, number: int) -> str | None:
        """The hash of the node's block ``number`` (0x-prefixed hex); None when it has no
        block of that number (:func:`_block_hash`)."""
        found = _block_hash(self.w3, number)
        return None if found is None else "0x" + found.hex()

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def now(self) -> int:
        """The chain's time: the latest block's timestamp (unix seconds). The contract
        judges a signature's expiry by its block's, which is no earlier."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def close(self) -> None:
        if self.node is not None:
            self.node.stop()


class SettlementReader:
    """What a verifier reads from a chain through any JSON-RPC node (no key, no compiler):
    the settle transaction's own input and events, and the contract's state."""

    def __init__(self, w3: Web3, contract: str, log_window: int | None = None) -> None:
        from settlement.receipts import VERIFY_ABI

        log_window = LOG_WINDOW if log_window is None else log_window
        if log_window < 1:
            raise ValueError("the log window is at least one block")
        self.w3 = w3
        self.address = Web3.to_checksum_address(contract)
        self.c = w3.eth.contract(address=self.address, abi=VERIFY_ABI)
        self.log_window = log_window
        # the contract's first block: no log of it is older (its creation's, once checked)
        self.first_block = 0

    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def block_number(self) -> int:
        """The node's latest block: how deep the settle block is."""
        return int(self.w3.eth.block_number)

    def block_hash(self, number: int) -> bytes | None:
        """The hash of the node's block ``number``; None when it has no block of that
        number (:func:`_block_hash`)."""
        return _block_hash(self.w3, number)

    def reorganised(self, pinned: tuple[int, bytes]) -> bool:
        """Whether the node's block at height ``pinned[0]`` is no longer the one whose hash
        is ``pinned[1]``: the chain reorganised it away (or is shorter now) since it was
        pinned, and what was read of it meanwhile is of no one chain. A block's hash
        commits to its transactions: a transaction in the pinned block is still there
        exactly when this is False."""
        return self.block_hash(pinned[0]) != pinned[1]

    def settle_input(self, tx_hash: bytes) -> tuple[str, int, int, list[tuple[bytes, int]]]:
        """(called contract, ledger, first seq, entries) of a settle transaction."""
        to, args = self._settle_call(tx_hash)
        entries = [(bytes(e["record_hash"]), int(e["packed"])) if isinstance(e, dict)
                   else (bytes(e[0]), int(e[1])) for e in args["entries"]]
        return to, int(args["ledger"]), int(args["first_seq"]), entries

    def settle_auths(self, tx_hash: bytes) -> list[int]:
        """The packed fields of the authorizations a settle transaction carries, in order:
        the contract checks its n-th signed entry against the n-th (Settlement.vy
        ``settle``), the driver's signature over them with the entry's station."""
        _, args = self._settle_call(tx_hash)
        return [int(a["packed"]) if isinstance(a, dict) else int(a[0]) for a in args["auths"]]

    def _settle_call(self, tx_hash: bytes) -> tuple[str, dict[str, Any]]:
        tx = self.w3.eth.get_transaction(HexStr("0x" + tx_hash.hex()))
        fn, args = self.c.decode_function_input(tx["input"])
        if fn.fn_name != "settle":
            raise ChainError(f"the transaction calls {fn.fn_name}, not settle")
        return str(tx["to"]), args

    def outcome(self, tx_hash: bytes) -> tuple[int, int, bool, dict[int, int]]:
        """(status, block number, whether it settled a chunk, unpaid seq -> reason)."""
        receipt = self.w3.eth.get_transaction_receipt(HexStr("0x" + tx_hash.hex()))
        settled = self.c.events.Settled().process_receipt(receipt, errors=DISCARD)
        unpaid = {int(e["args"]["seq"]): int(e["args"]["reason"])
                  for e in self.c.events.Unpaid().process_receipt(receipt, errors=DISCARD)}
        return int(receipt["status"]), int(receipt["blockNumber"]), bool(settled), unpaid

    def creation(self, tx_hash: bytes) -> tuple[str | None, bytes, str | None, int, int]:
        """(called address: None for a contract creation, input, the address of the contract
        it created, status, block number) of a transaction."""
        tx = self.w3.eth.get_transaction(HexStr("0x" + tx_hash.hex()))
        receipt = self.w3.eth.get_transaction_receipt(HexStr("0x" + tx_hash.hex()))
        to, created = tx.get("to"), receipt.get("contractAddress")
        return (str(to) if to else None, bytes(tx["input"]),
                str(created) if created else None, int(receipt["status"]),
                int(receipt["blockNumber"]))

    def settle_block(self, tx_hash: bytes) -> tuple[int, bytes] | None:
        """(number, hash) of the block a transaction is in; None when it is in none of the
        node's chain (not mined yet, or its block was reorganised away: back in the node's
        pool, or dropped)."""
        try:
            receipt = self.w3.eth.get_transaction_receipt(HexStr("0x" + tx_hash.hex()))
        except TransactionNotFound:
            return None
        # a node may answer a pending transaction's receipt with no block
        number: Any = receipt.get("blockNumber")
        block_hash: Any = receipt.get("blockHash")
        if number is None or block_hash is None:
            return None
        return int(number), bytes(block_hash)

    def chunk_digest(self, ledger: int, first_seq: int, block: int) -> bytes:
        """The digest the contract holds for the chunk of ``ledger`` from ``first_seq`` at
        the end of ``block`` (zero: none): written once, by the settle transaction that took
        those sequence numbers (Settlement.vy ``settle``), so where the node keeps no state
        of that block, as now (:meth:`_once_written`)."""
        return bytes(self._once_written(self.c.functions.chunk_digest(ledger, first_seq),
                                        block))

    def driver_index(self, driver: str, block: int | None = None) -> int:
        """The driver's index as the contract held it at the end of ``block`` (None: now)."""
        address = Web3.to_checksum_address(driver)
        try:
            return int(self.c.functions.driver_index(address).call(
                block_identifier="latest" if block is None else block))
        except Exception:  # a node that keeps no state of that block: the contract's events
            if block is None:
                raise
        logs = self._logs(DRIVER_REGISTERED, address, block)
        return int.from_bytes(bytes(logs[0]["data"])[:32], "big") if logs else 0

    def card_linked(self, driver_index: int, commitment: bytes, driver: str | None = None,
                    block: int | None = None) -> bool:
        """Whether the card's commitment was linked to the driver at the end of ``block``."""
        try:
            return bool(self.c.functions.cards(driver_index, commitment).call(
                block_identifier="latest" if block is None else block))
        except Exception:
            if block is None or driver is None:
                raise
        # a node that keeps no state of that block: the driver's last CardLinked of the
        # commitment up to it (the contract's own events: its code and origin are checked)
        changes = self._card_links(driver, commitment, block)
        return changes[-1][1] if changes else False

    def _card_links(self, driver: str, commitment: bytes, block: int
                    ) -> list[tuple[int, bool]]:
        """The changes of the card's link (its commitment) to the driver up to ``block``,
        from the contract's CardLinked events, oldest first: (block number, linked).
        Raises when the logs cannot be read (``_logs``)."""
        out: list[tuple[int, bool]] = []
        for entry in self._logs(CARD_LINKED, Web3.to_checksum_address(driver), block):
            data = bytes(entry["data"])
            if data[:32] == commitment:
                out.append((int(entry["blockNumber"]), int.from_bytes(data[32:64], "big") == 1))
        return out

    def card_link_changes(self, driver: str, commitment: bytes, block: int
                          ) -> list[tuple[int, bool]]:
        """:meth:`_card_links` with each change's block timestamp for its number."""
        times: dict[int, int] = {}
        out: list[tuple[int, bool]] = []
        for number, linked in self._card_links(driver, commitment, block):
            if number not in times:
                times[number] = int(self.w3.eth.get_block(number)["timestamp"])
            out.append((times[number], linked))
        return out

    @staticmethod
    def _once_written(call: Any, block: int) -> Any:
        """``call`` (a contract function's) at the end of ``block``: of a value the contract
        writes once (an immutable, a station's host), so where the node keeps no state of
        that block, as now."""
        try:
            return call.call(block_identifier=block)
        except Exception:  # a node that keeps no state of that block
            return call.call()

    def unit(self, block: int) -> int:
        """The token base units a billing unit is worth (Settlement.vy ``unit``) at the end of
        ``block``: an immutable of the contract's code (:meth:`_once_written`)."""
        return int(self._once_written(self.c.functions.unit(), block))

    def token(self, block: int) -> str | None:
        """The ERC-20 token the escrows hold (Settlement.vy ``token``, an immutable), None for
        the native coin."""
        token = str(self._once_written(self.c.functions.token(), block))
        return None if int(token, 16) == 0 else token

    def token_decimals(self, token: str, block: int) -> int | None:
        """The token's ``decimals()`` at the end of ``block`` (None: it answers none)."""
        erc20 = self.w3.eth.contract(address=Web3.to_checksum_address(token),
                                     abi=ERC20_DECIMALS_ABI)
        try:
            return int(self._once_written(erc20.functions.decimals(), block))
        except Exception:  # a token without the optional decimals()
            return None

    def station_host(self, index: int, block: int) -> str:
        """The host a station index pays (Settlement.vy ``station``: who registered it) at
        the end of ``block``; the zero address for an index not registered. Written once,
        at the index's registration, so where the node keeps no state of that block, the
        same as now (an index registered after the block was unknown then: the contract
        paid none of its entries, ``UNKNOWN_STATION``)."""
        host, _power = self._once_written(self.c.functions.station(index), block)
        return str(host)

    def max_per_session(self, driver: str, block: int) -> int:
        """The driver's limit per session in force at the end of ``block`` (the terms the
        contract checks a card session against; 0: not a driver)."""
        address = Web3.to_checksum_address(driver)
        try:
            state = self.c.functions.driver_state(address).call(block_identifier=block)
            return Terms.unpack(int(state[3])).max_per_session
        except Exception:  # a node that keeps no state of that block: the contract's events
            pass
        return Terms.unpack(self._terms_from_events(address, block)).max_per_session

    def _terms_from_events(self, driver: str, block: int) -> int:
        """The terms in force at the end of ``block`` (packed), as Settlement.vy
        ``set_terms`` and ``_terms_now`` make them from the driver's TermsSet events: what
        raises a field applies at once, what lowers it from its ``effective_at``."""
        current, pending, pending_from = 0, None, 0
        times: dict[int, int] = {}

        def time_of(number: int) -> int:
            if number not in times:
                times[number] = int(self.w3.eth.get_block(number)["timestamp"])
            return times[number]

        for entry in self._logs(TERMS_SET, driver, block):
            data = bytes(entry["data"])
            new, effective = int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big")
            at = time_of(int(entry["blockNumber"]))
            old = pending if pending is not None and at >= pending_from else current
            now = _higher_terms(new, old)
            if now == new:
                current, pending = new, None
            else:
                current, pending, pending_from = now, new, effective
        if pending is not None and time_of(block) >= pending_from:
            return pending
        return current

    def _logs(self, event: str, driver: str, block: int) -> list[Any]:
        """The driver's logs of one event from the contract's first block to ``block``, in
        order (:meth:`logs`). Every window is read or this raises: a window left out could
        hide the event that decides the verdict (a card unlinked, terms lowered)."""
        return self.logs([event_topic(event), address_topic(driver)], self.first_block, block)

    def logs(self, topics: Sequence[str | list[str] | None], start: int, end: int,
             on_window: Callable[[int], None] | None = None) -> list[Any]:
        """The contract's logs matching ``topics`` (eth_getLogs': a topic, a list of
        alternatives, or None for any) from block ``start`` to ``end``, in order: read in
        windows of at most ``log_window`` blocks, a window the node refuses for its width
        asked again in halves (and the windows after it no wider). Every window is read or
        this raises (a node's error, or :class:`ChainError`); a log the query did not ask
        for is an error too. ``on_window`` is called with the last block of each window
        read."""
        wanted = [t if t is None or isinstance(t, str) else list(t) for t in topics]
        out: list[Any] = []
        while start <= end:
            last = min(start + self.log_window - 1, end)
            try:
                logs = self.w3.eth.get_logs({
                    "address": self.address, "fromBlock": start, "toBlock": last,
                    "topics": cast(Any, wanted)})
            except Exception as exc:
                code, message = _rpc_error(exc)
                if not log_range_refused(code, message):
                    raise
                if last == start:
                    raise ChainError(f"the node refuses the contract's logs of even one block"
                                     f" ({start}): {message}") from None
                # the next windows, of this query and the reader's next, no wider
                self.log_window = (last - start + 1) // 2
                continue
            for entry in logs:
                at = int(entry["blockNumber"])
                got = ["0x" + bytes(t).hex() for t in entry["topics"]]
                if (not start <= at <= last or str(entry["address"]).lower()
                        != self.address.lower() or entry.get("removed")
                        or len(got) < len(wanted) or not all(
                            w is None or (got[i] == w if isinstance(w, str) else got[i] in w)
                            for i, w in enumerate(wanted))):
                    raise ChainError("the node answered a log the query did not ask for")
            out.extend(logs)
            if on_window is not None:
                on_window(last)
            start = last + 1
        return sorted(out, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])))

    def code(self, block: int | None = None) -> bytes:
        """The code deployed at the contract's address (empty: none) at the end of
        ``block`` (None: the latest)."""
        return bytes(self.w3.eth.get_code(self.address,
                                          "latest" if block is None else block))


def _block_hash(w3: Web3, number: int) -> bytes | None:
    """The hash of the node's block ``number``; None when the node has no block of that
    number (not reached yet, or a shorter fork now). A node that cannot answer raises: that
    is no reorganisation."""
    try:
        return bytes(w3.eth.get_block(number)["hash"])
    except BlockNotFound:
        return None


def _rpc_error(exc: Exception) -> tuple[Any, str]:
    """(code, message) of a node's JSON-RPC error (the message with its data, where some
    providers say why); (None, the exception's text) for any other failure."""
    response = getattr(exc, "rpc_response", None)
    if response is None and getattr(exc, "response", None) is not None:
        with contextlib.suppress(ValueError, AttributeError):
            response = exc.response.json()  # type: ignore[attr-defined]  # an HTTP error's
    error = response.get("error") if isinstance(response, dict) else None
    if not isinstance(error, dict):
        return None, str(exc)
    message = str(error.get("message", ""))
    if error.get("data") is not None:
        message += f" {json.dumps(error['data'])}"
    return error.get("code"), message


# HTTP client errors that may pass when asked again: a request timeout, a rate limit.
_RETRIED_CLIENT_ERRORS = frozenset({408, 425, 429})


class _ReaderProvider(HTTPProvider):
    """web3's HTTP provider, which asks again with a backoff what may pass later (a lost
    connection, a timeout, a server's error, a rate limit) but not a request the node
    refused with another HTTP 4xx: it answers that request the same way every time (a
    provider refusing an eth_getLogs range under HTTP 413 is answered with half the range,
    not sent the same range five times, two seconds of backoff, before that)."""

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        config = self.exception_retry_configuration
        if (config is None or config.retries < 1
                or not check_if_retry_on_failure(method, config.method_allowlist)):
            return super()._make_request(method, request_data)
        for attempt in range(config.retries):
            try:
                return self._request_session_manager.make_post_request(
                    cast(URI, self.endpoint_uri), request_data, **self.get_request_kwargs())
            except tuple(config.errors) as exc:
                response = getattr(exc, "response", None)
                status = getattr(response, "status_code", None)
                refused = (isinstance(status, int) and 400 <= status < 500
                           and status not in _RETRIED_CLIENT_ERRORS)
                if refused or attempt == config.retries - 1:
                    raise
                time.sleep(config.backoff_factor * 2**attempt)
        raise AssertionError("the last attempt returns or raises")


def rpc_client(url: str) -> Web3:
    """A read-only JSON-RPC client, for verifying receipts."""
    return Web3(_ReaderProvider(url, request_kwargs={"timeout": 10}))


def _deployment_file(data_dir: Path) -> Path:
    return data_dir / "chain.json"


def recorded_deployments(data_dir: str | Path) -> dict[str, Any]:
    """The contracts a data folder recorded (its chain.json), by chain id: ``{}`` when it
    records none, or its file cannot be read as such (for a command that only looks)."""
    try:
        return _read_deployments(Path(data_dir).expanduser())
    except ChainError:
        return {}


def _read_deployments(folder: Path) -> dict[str, Any]:
    """The contracts the data folder recorded, by chain id (``{}``: no chain.json); raises
    ChainError (one line) when the file cannot be read as such: a command that deploys
    must not take it for no record (it would write a new contract over it)."""
    path = _deployment_file(folder)
    try:
        known = json.loads(path.read_text("utf-8")) if path.exists() else {}
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSON's errors included
        raise ChainError(f"cannot read the contracts recorded in {path}:"
                         f" {str(exc).splitlines()[0]}") from None
    if not isinstance(known, dict):
        raise ChainError(f"{path} records no contracts: it holds no JSON object")
    return known


@dataclass(frozen=True)
class ContractParams:
    """What a deployment fixes for the contract's life (see Settlement.vy)."""

    notice_period: int = NOTICE_PERIOD_S  # seconds before lower terms or withdrawals apply
    token: str | None = None  # ERC-20 escrows; the native coin when None
    unit: int = 1  # token base units per billing unit (a tariff's minor unit)
    platform: str | None = None  # receives the fee; the operator when None
    fee_bps: int = 0  # the platform's fee in basis points (at most 2,000)
    # the billing unit, recorded with the deployment (the contract knows no currency):
    # a billing unit is 10^-decimals of currency
    currency: str | None = None
    decimals: int | None = None

    @property
    def billing(self) -> tuple[str, int] | None:
        """(currency, decimals), as :attr:`Chain.billing` holds it; None without both."""
        if self.currency is None or self.decimals is None:
            return None
        return self.currency, self.decimals


CONTRACT_VERSION = 2

# an ERC-20 token's decimals() (optional in ERC-20: a token without it tells no decimals)
ERC20_DECIMALS_ABI = [{"type": "function", "name": "decimals", "stateMutability": "view",
                       "inputs": [], "outputs": [{"name": "", "type": "uint8"}]}]


def open_chain(spec: str, data_dir: str | Path, *, keystore: str | None = None,
               password_file: str | None = None, deploy: bool = True,
               params: ContractParams | None = None, contract: str | None = None,
               prune_history: int | None = None, attach: bool = False) -> Chain:
    """``memory``, ``local`` or a JSON-RPC URL; deploys the contract once where needed.

    ``contract``: use this deployed contract (a driver's or a host's tools, which hold no
    operator key: then ``keystore`` is theirs). ``prune_history``: the ``local`` node keeps
    the state of that many latest blocks only (:class:`AnvilNode`). ``attach``: the
    ``local`` node another process of this machine runs, if one does (:class:`AnvilNode`)."""
    params = params or ContractParams()
    folder = Path(data_dir).expanduser()
    cache = folder / "cache"
    if spec == "memory":
        from web3 import EthereumTesterProvider

        tester = EthereumTesterProvider()
        # py-evm is not thread-safe: the worker and the credit checks call it from threads
        lock = threading.Lock()
        request = tester.make_request

        def serialized(method: Any, params: Any) -> Any:
            with lock:
                return request(method, params)

        tester.make_request = serialized  # type: ignore[method-assign]
        w3 = Web3(tester)
        operator: LocalAccount = Account.create()
        funder = w3.eth.accounts[0]
        w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(
            {"from": funder, "to": operator.address, "value": Wei(10**21)}))
        chain = Chain(w3, operator, "memory", cache)
        chain.deploy(params.notice_period, params.token, params.unit, params.platform,
                     params.fee_bps)
        chain.billing = params.billing
        return chain
    if spec == "local":
        node = AnvilNode(folder / "anvil-state.json", prune_history=prune_history,
                         attach=attach)
        try:
            w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
            operator = _managed_keystore(folder)
            if int(w3.eth.get_balance(operator.address)) < 10**18:
                w3.provider.make_request("anvil_setBalance",  # type: ignore[arg-type]
                                         [operator.address, hex(10**22)])
            return _with_contract(Chain(w3, operator, "local", cache, node), folder,
                                  deploy=deploy, params=params, contract=contract)
        except BaseException:
            # refused (or interrupted) after the node started: stop it here, not at this
            # process's end (a `csms serve` opening the chain again would hold one more node
            # per attempt, each on the state file)
            node.stop()
            raise
    if spec.startswith(("http://", "https://", "ws://", "wss://")):
        if not keystore or not password_file:
            raise ChainError("a JSON-RPC chain needs --keystore and --password-file"
                             " (or CSMS_KEYSTORE / CSMS_KEYSTORE_PASSWORD_FILE)")
        try:
            password = read_limited(password_file).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ChainError(f"cannot read the password file {password_file}: {exc}") from None
        operator = _load_keystore(Path(keystore).expanduser(), password)
        if not spec.startswith("http"):
            raise ChainError("use the node's http(s):// JSON-RPC endpoint")
        provider: Any = Web3.HTTPProvider(spec, request_kwargs={"timeout": 30})
        w3 = Web3(provider)
        _answers(w3)
        return _with_contract(Chain(w3, operator, "rpc", cache), folder, deploy=deploy,
                              params=params, contract=contract)
    raise ChainError(f"unknown chain {spec!r}: use local, memory or an http(s)/ws(s) URL")


# what a failed connection says, by the words of its cause (requests words it at length)
_UNREACHABLE = ("connection refused", "name or service not known", "temporary failure in"
                " name resolution", "no route to host", "network is unreachable", "timed out",
                "connection reset", "remote end closed connection")


def _answers(w3: Web3) -> None:
    """The JSON-RPC node of ``w3`` answers (its chain id), else a one-line ChainError: a
    node that is down, a wrong port, a page that is not JSON-RPC. The URL is not quoted
    (it may hold an API key)."""
    try:
        w3.eth.chain_id  # noqa: B018
    except (OSError, ValueError, Web3Exception) as exc:  # requests' errors are OSErrors
        text = " ".join(str(exc).split())
        status = getattr(getattr(exc, "response", None), "status_code", None)
        reason = next((words for words in _UNREACHABLE if words in text.lower()),
                      f"HTTP status {status}" if status is not None else
                      _rpc_error(exc)[1][:200] if isinstance(exc, Web3Exception) else
                      type(exc).__name__)
        raise ChainError(f"the chain's JSON-RPC node does not answer: {reason}") from None


def _with_contract(chain: Chain, folder: Path, *, deploy: bool, params: ContractParams,
                   contract: str | None) -> Chain:
    """``chain`` on ``contract``, else on the contract the data folder recorded for it,
    else (``deploy``) on one deployed now and recorded there (:func:`open_chain`)."""
    if contract is not None:
        chain.use(contract)
        return chain
    record = _deployment_file(folder)
    deployments = _read_deployments(folder)
    entry = deployments.get(str(chain.chain_id))
    if entry is not None and not isinstance(entry, dict):
        raise ChainError(f"{record} records no contract for chain {chain.chain_id}: its"
                         " entry is no JSON object")
    if entry is not None and entry.get("version") != CONTRACT_VERSION:
        log.warning("! the contract recorded for chain %d (%s) is of an earlier version;"
                    " a new one is deployed", chain.chain_id, entry.get("contract"))
        entry = None
    if entry is not None:
        # raises ContractMissing on a reset chain
        chain.use(entry["contract"], entry.get("deploy_tx"))
        if isinstance(entry.get("currency"), str) and isinstance(entry.get("decimals"), int):
            chain.billing = (entry["currency"], entry["decimals"])
    elif deploy:
        address = chain.deploy(params.notice_period, params.token, params.unit,
                               params.platform, params.fee_bps)
        # the ledger's billing unit with it, and the decimals of what the escrows hold
        # (read on chain): a billing unit is unit / 10^token_decimals of the token
        deployments[str(chain.chain_id)] = {
            "contract": address, "deploy_tx": chain.deploy_tx, "kind": chain.kind,
            "rpc": chain.rpc_url, "version": CONTRACT_VERSION, "token": params.token,
            "unit": params.unit, "fee_bps": params.fee_bps, "platform": params.platform,
            "currency": params.currency, "decimals": params.decimals,
            "token_decimals": chain.token_decimals()}
        chain.billing = params.billing
        folder.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(deployments, indent=2), "utf-8")
        log.info("= deployed the settlement contract at %s on chain %d", address,
                 chain.chain_id)
    else:
        raise ChainError(f"no contract recorded for chain {chain.chain_id}: run csms contract"
                         " deploy")
    return chain
