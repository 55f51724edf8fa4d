"""What drivers and hosts do on chain with their own keys (``csms driver``, ``csms host``).

The operator's central system never holds these keys: a driver deposits into an escrow it
owns, states the terms it accepts, links its cards and signs its app sessions; a host
registers its stations and withdraws its earnings. Tests and the demo use the same
functions with generated accounts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from settlement.chain import Chain, ChainError
from settlement.eip712 import Authorization, sign
from settlement.records import card_commitment

__all__ = [
    "DriverTerms",
    "authorize",
    "deposit",
    "fund_on_dev_chain",
    "link_card",
    "new_salt",
    "register_station",
    "request_withdrawal",
    "set_terms",
    "withdraw",
    "withdraw_earnings",
]


@dataclass(frozen=True)
class DriverTerms:
    """The most a driver accepts, in billing units (a tariff's minor units)."""

    max_per_kwh: int
    max_per_minute: int = 0
    max_session_fee: int = 0
    max_per_session: int = 10_000
    max_per_day: int = 50_000
    allow_cards: bool = True


def deposit(chain: Chain, driver: LocalAccount, amount: int) -> None:
    """Put ``amount`` token base units (or wei) into the driver's own escrow."""
    token = chain.info()["token"]
    if token is None:
        chain.transact(driver, "deposit", value=amount)
        return
    erc20 = chain.w3.eth.contract(address=chain.w3.to_checksum_address(token),
                                  abi=_ERC20_ABI)
    max_fee, tip = chain.fees()
    params: Any = {"from": driver.address, "chainId": chain.chain_id, "maxFeePerGas": max_fee,
                   "maxPriorityFeePerGas": tip,
                   "nonce": int(chain.w3.eth.get_transaction_count(driver.address, "pending"))}
    approve: Any = erc20.functions.approve(chain.contract_address, amount).build_transaction(
        params)
    chain._send(dict(approve), driver)
    chain.transact(driver, "deposit_token", amount)


def set_terms(chain: Chain, driver: LocalAccount, terms: DriverTerms) -> None:
    chain.transact(driver, "set_terms", terms.max_per_kwh, terms.max_per_minute,
                   terms.max_session_fee, terms.max_per_session, terms.max_per_day,
                   terms.allow_cards)


def new_salt() -> bytes:
    return secrets.token_bytes(32)


def link_card(chain: Chain, driver: LocalAccount, tag: str, salt: bytes,
              linked: bool = True) -> bytes:
    """Link a card to the driver's escrow on chain; give (tag, salt) to the operator only."""
    commitment = card_commitment(driver.address, tag, salt)
    chain.transact(driver, "link_card", commitment, linked)
    return commitment


def request_withdrawal(chain: Chain, driver: LocalAccount, amount: int) -> None:
    chain.transact(driver, "request_withdrawal", amount)


def withdraw(chain: Chain, driver: LocalAccount, to: str | None = None) -> None:
    chain.transact(driver, "withdraw", chain.w3.to_checksum_address(to or driver.address))


def register_station(chain: Chain, host: LocalAccount, max_power_w: int) -> int:
    """The host registers a station it owns; returns the station's index."""
    return chain.register_station(max_power_w, host)


def withdraw_earnings(chain: Chain, account: LocalAccount, to: str | None = None) -> None:
    chain.transact(account, "withdraw_earnings",
                   chain.w3.to_checksum_address(to or account.address))


def authorize(chain: Chain, driver: LocalAccount, station: int, *, max_per_kwh: int,
              max_amount: int, nonce: int, expiry: int, max_per_minute: int = 0,
              max_session_fee: int = 0) -> Authorization:
    """The driver's signed consent to one session at one station (EIP-712)."""
    if chain.contract_address is None:
        raise ChainError("no contract")
    auth = Authorization(driver.address, station, max_per_kwh, max_per_minute,
                         max_session_fee, max_amount, nonce, expiry)
    return sign(auth, driver.key, chain.chain_id, chain.contract_address)


def fund_on_dev_chain(chain: Chain, address: str, wei: int = 10**20) -> None:
    """Give an account coins on a development chain (the managed Anvil, py-evm)."""
    if chain.kind == "memory":
        w3 = chain.w3
        w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(
            {"from": w3.eth.accounts[0], "to": address, "value": wei}))  # type: ignore[typeddict-item]
    elif chain.kind == "local":
        chain.w3.provider.make_request("anvil_setBalance",  # type: ignore[arg-type]
                                       [address, hex(wei)])
    else:
        raise ChainError("only a development chain gives coins away")


def account_from_key(key: Any) -> LocalAccount:
    acct: LocalAccount = Account.from_key(key)
    return acct


_ERC20_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
]
