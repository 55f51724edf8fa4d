"""Drive the settlement contract in tests: funded accounts, drivers, hosts, chunks, time."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import vyper
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError

from settlement import wallet
from settlement.chain import Chain, ChainError, Settled
from settlement.eip712 import Authorization
from settlement.records import CARD, SIGNED, pack_entry

__all__ = ["Kit", "Row", "link_stations_and_card", "reverts"]

CONTRACTS = Path(__file__).parent / "contracts"


@functools.cache
def _compiled(name: str) -> dict[str, Any]:
    """ABI and bytecode of a contract of tests/support/contracts, compiled once a process
    (a second or more each; nothing changes them)."""
    out: dict[str, Any] = vyper.compile_code((CONTRACTS / f"{name}.vy").read_text(),
                                             output_formats=["abi", "bytecode"])
    return out


@functools.cache
def _storage_slot(variable: str) -> int:
    """The storage slot of a plain variable of Settlement.vy, from the compiler's layout."""
    from settlement.contract import source

    layout = vyper.compile_code(source(), output_formats=["layout"])["layout"]
    entry = layout["storage_layout"][variable]
    if entry["type"] != "uint256":
        raise ValueError(f"{variable} is a {entry['type']}, not a uint256")
    return int(entry["slot"])


async def link_stations_and_card(repo: Any, host: str, stations: dict[str, int], tag: str,
                                  driver: str, salt: bytes, commitment: bytes) -> None:
    """Record in the central system what was done on chain: each station's host and
    on-chain index, and the card ``tag`` linked to ``driver`` (its salt and commitment)."""
    from csms.domain.model import IdTag

    async def link(tx: Any) -> None:
        for sid, index in stations.items():
            station = await tx.get_station(sid)
            station.host_address, station.chain_station = host.lower(), index
            await tx.update_station(station)
        await tx.put_tag(IdTag(tag))
        await tx.link_card(tag, driver, "0x" + salt.hex(), "0x" + commitment.hex(),
                           datetime.now(UTC))

    await repo.unit(link)


def reverts(reason: str = "") -> Any:
    """py-evm through eth-tester raises TransactionFailed, a JSON-RPC node
    ContractLogicError; Chain wraps a failed transaction in ChainError."""
    return pytest.raises((ContractLogicError, TransactionFailed, ChainError), match=reason)


@dataclass
class Row:
    """One session to settle: (station index, driver index, Wh, seconds, amount, kind)."""

    station: int
    driver: int
    energy_wh: int
    duration_s: int
    amount: int
    kind: int = CARD
    auth: Authorization | None = None
    record_hash: bytes = b""
    forged_bits: int = 0  # OR'd into the packed entry (bits no honest entry sets)


class Kit:
    """One contract on one chain (py-evm or Anvil) and the parties around it."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.w3 = chain.w3
        self.ledger = secrets.randbits(62) + 1
        self.registered: set[int] = set()

    @property
    def c(self) -> Any:
        return self.chain.contract

    # -- accounts ----------------------------------------------------------------
    def fund(self, address: str, wei: int = 10**20) -> None:
        if self.chain.kind == "memory":
            w3 = self.w3
            w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(
                {"from": w3.eth.accounts[0], "to": address, "value": wei}))  # type: ignore[typeddict-item]
        else:
            self.w3.provider.make_request("anvil_setBalance",  # type: ignore[arg-type]
                                          [address, hex(wei)])

    def account(self) -> LocalAccount:
        acct: LocalAccount = Account.create()
        self.fund(acct.address)
        return acct

    def driver(self, deposit: int = 10**6, **terms: Any) -> tuple[LocalAccount, int]:
        """A driver with an escrow and standing terms; returns (account, driver index)."""
        acct = self.account()
        defaults: dict[str, Any] = {"max_per_kwh": 40, "max_per_minute": 0,
                                    "max_session_fee": 50, "max_per_session": 10_000,
                                    "max_per_day": 1_000_000, "allow_cards": True}
        wallet.set_terms(self.chain, acct, wallet.DriverTerms(**{**defaults, **terms}))
        if deposit:
            wallet.deposit(self.chain, acct, deposit)
        return acct, self.chain.driver_state(acct.address).index

    def host(self, max_power_w: int = 22_000) -> tuple[LocalAccount, int]:
        acct = self.account()
        return acct, wallet.register_station(self.chain, acct, max_power_w)

    def earnings(self, address: str) -> int:
        return int(self.c.functions.earnings(address).call()) - 1  # one unit stays

    def balance(self, driver: LocalAccount) -> int:
        return self.chain.driver_state(driver.address).balance

    # -- settlement --------------------------------------------------------------
    def entries(self, rows: Sequence[Row]) -> tuple[list[tuple[bytes, int]],
                                                     list[tuple[int, bytes, bytes]]]:
        slots: dict[tuple[int, int], int] = {}
        entries, auths = [], []
        for r in rows:
            # forged bits may make another station of the same low bits: a slot of its own
            slot = slots.setdefault((r.station, r.forged_bits), len(slots))
            packed = pack_entry(r.station, r.driver, r.energy_wh, r.duration_s, r.amount,
                                r.kind if r.kind in (CARD, SIGNED) else CARD, slot)
            if r.kind not in (CARD, SIGNED):  # a kind the contract does not know
                packed = packed & ~(255 << 168) | r.kind << 168
            packed |= r.forged_bits
            entries.append((r.record_hash or secrets.token_bytes(32), packed))
            if r.kind == SIGNED and r.auth is not None:
                auths.append((r.auth.packed(), *r.auth.compact_signature()))
        return entries, auths

    def settle(self, rows: Sequence[Row], first_seq: int | None = None,
               ledger: int | None = None) -> Settled:
        """Settle the rows as the next chunk of the kit's ledger (or the one given)."""
        ledger = ledger or self.ledger
        if ledger not in self.registered:
            self.chain.register_ledger(ledger)
            self.registered.add(ledger)
        first = first_seq if first_seq is not None else self.chain.ledger_next(ledger)
        entries, auths = self.entries(rows)
        # a call first: a revert then says why (a raw transaction's receipt does not)
        self.c.functions.settle(ledger, first, entries, auths).call(
            {"from": self.chain.operator.address})
        max_fee, tip = self.chain.fees()
        # one sender at a time with the operator's key: a central system running beside the
        # kit (its worker registering its ledger) takes a nonce as the chain's methods do
        with self.chain._sending:
            raw, tx_hash = self.chain.sign_settle(ledger, first, entries, auths,
                                                  self.chain.next_nonce(), max_fee, tip,
                                                  8_000_000 + 40_000 * len(rows))
            self.chain.broadcast(raw)
        if self.chain.kind != "memory":
            self.w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        receipt = self.chain.receipt(tx_hash)
        if receipt is None or receipt.status != 1:
            raise ChainError(f"settle reverted ({tx_hash})")
        settled = self.chain.settled(tx_hash)
        assert settled is not None
        return settled

    # -- time --------------------------------------------------------------------
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        if self.chain.kind == "memory":
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            tester.time_travel(self.now() + seconds)
            tester.mine_blocks()
        else:
            self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def mine(self, blocks: int) -> None:
        """``blocks`` empty blocks on top of the chain."""
        if self.chain.kind == "memory":
            self.w3.provider.ethereum_tester.mine_blocks(blocks)  # type: ignore[attr-defined]
        else:
            self.w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]

    # -- state -------------------------------------------------------------------
    def set_storage(self, variable: str, value: int) -> None:
        """Write a storage variable of the contract (a plain uint256 of its layout, the slot
        the compiler gave it), as no transaction could: a state a test cannot reach by
        transactions in its time (16.7 million stations registered)."""
        slot = _storage_slot(variable)
        address = str(self.c.address)
        if self.chain.kind == "memory":
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            backend = tester.backend
            state = backend.chain.get_vm().state
            state.set_storage(bytes.fromhex(address.removeprefix("0x")), slot, value)
            state.persist()
            backend.chain.header = backend.chain.header.copy(state_root=state.state_root)
            tester.mine_blocks()
        else:
            word = "0x" + value.to_bytes(32, "big").hex()
            self.w3.provider.make_request("anvil_setStorageAt",  # type: ignore[arg-type]
                                          [address, hex(slot), word])
            self.mine(1)

    # -- other contracts ---------------------------------------------------------
    def deploy(self, name: str) -> Any:
        """A contract of tests/support/contracts, deployed by a funded account."""
        out = _compiled(name)
        deployer = self.account()
        factory = self.w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
        tx = factory.constructor().build_transaction({
            "from": deployer.address, "chainId": self.chain.chain_id,
            "nonce": self.w3.eth.get_transaction_count(deployer.address)})
        signed = deployer.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction))
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=out["abi"])

    def call(self, account: LocalAccount, contract: Any, function: str, *args: Any) -> Any:
        """Call another contract's function as ``account`` and wait for it."""
        max_fee, tip = self.chain.fees()
        tx = getattr(contract.functions, function)(*args).build_transaction({
            "from": account.address, "chainId": self.chain.chain_id,
            "nonce": self.w3.eth.get_transaction_count(account.address),
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip})
        return self.chain._send(tx, account)
