"""A driver's signed consent to one app session: the EIP-712 ``SessionAuthorization``.

A driver who starts a session from an app or a QR code signs, with the account that owns
the escrow, the most they accept for that session at that station::

    SessionAuthorization(address driver, uint256 station, uint256 maxPerKwh,
                         uint256 maxPerMinute, uint256 maxSessionFee, uint256 maxAmount,
                         uint256 nonce, uint256 expiry)

in the domain (name "voltledger", version "2", chainId, verifyingContract). The contract
recomputes the digest from the settle transaction's entry and checks the signature, the
station, the prices, the amount, the nonce (once) and the expiry (the latest time the
session may be settled). Any wallet that signs EIP-712 typed data produces the same
signature as :func:`sign`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

from settlement.records import LIMITS, ascii_int

__all__ = ["ADDRESS", "Authorization", "digest", "domain_separator", "recover", "sign",
           "typed_data"]

DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
AUTH_TYPE = ("SessionAuthorization(address driver,uint256 station,uint256 maxPerKwh,"
             "uint256 maxPerMinute,uint256 maxSessionFee,uint256 maxAmount,uint256 nonce,"
             "uint256 expiry)")
NAME, VERSION = "voltledger", "2"
_FIELDS = ("driver", "station", "max_per_kwh", "max_per_minute", "max_session_fee",
           "max_amount", "nonce", "expiry", "signature")
# an address as the contract and eth_abi read one and the receipt page takes: 0x and 40 hex
# digits, in any case (no checksum asked)
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
# the order of secp256k1's group: (r, s) and (r, n - s) are both signatures of a message
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# widths of the packed word the contract reads (settlement/contracts/Settlement.vy: Auth)
WIDTHS = (("max_per_kwh", 24), ("max_per_minute", 24), ("max_session_fee", 24),
          ("max_amount", 32), ("nonce", 48), ("expiry", 40))


@dataclass(frozen=True)
class Authorization:
    """What the driver signs (prices and amounts in the contract's billing units)."""

    driver: str
    station: int  # the station's index in the contract's registry
    max_per_kwh: int
    max_per_minute: int
    max_session_fee: int
    max_amount: int
    nonce: int
    expiry: int  # unix seconds: the latest time the session may be settled
    signature: str = ""  # 0x + 65 bytes (r, s, v)

    def __post_init__(self) -> None:
        for name, bits in WIDTHS:
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 2**bits:
                raise ValueError(f"{name} must be an integer below 2^{bits}")
        if not 0 < self.station < 2 ** LIMITS["chain_station"]:
            raise ValueError("station must be a registered station index")

    def packed(self) -> int:
        word, shift = 0, 0
        for name, bits in WIDTHS:
            word |= getattr(self, name) << shift
            shift += bits
        return word

    def canonical(self) -> Authorization:
        """The same authorization with its signature in the form wallets sign (EIP-2: s in
        the lower half of the curve's order, v 27 or 28): the one form EIP-2098's compact
        signature, which the contract reads, holds. The signer is the same: a signature
        with v as 0 or 1, as 35 + parity (a transaction's EIP-155 v, which
        :func:`recover` takes) or with the high s (n - s, parity flipped) is the same
        signature written otherwise. ValueError for one that is none of these."""
        raw = bytes.fromhex(self.signature.removeprefix("0x"))
        if len(raw) != 65:
            raise ValueError("a signature is 65 bytes")
        r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
        parity = v if v in (0, 1) else v - 27 if v in (27, 28) else (v - 35) % 2 \
            if v >= 35 else None
        if parity is None or not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
            raise ValueError("not a signature: v or r, s out of range")
        if s > SECP256K1_N // 2:
            s, parity = SECP256K1_N - s, parity ^ 1
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + parity])
        return replace(self, signature="0x" + sig.hex())

    def compact_signature(self) -> tuple[bytes, bytes]:
        """(r, vs) of EIP-2098, as the contract takes them (of the canonical signature:
        the high bit of ``vs`` is the parity, so s must be below 2^255)."""
        raw = bytes.fromhex(self.canonical().signature.removeprefix("0x"))
        s, parity = int.from_bytes(raw[32:64], "big"), raw[64] - 27
        return raw[:32], (s | parity << 255).to_bytes(32, "big")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Authorization:
        fields = _FIELDS
        missing = [f for f in fields if f not in data]
        if missing:
            raise ValueError(f"authorization lacks {missing}")
        try:
            n = [ascii_int(data[f]) for f in fields[1:8]]
            # an address as the contract and eth_abi read one, in any case (no checksum
            # asked: from_request takes any); eth_abi also reads "0X..." and no prefix,
            # which the receipt page does not
            if not isinstance(data["driver"], str) or not ADDRESS.fullmatch(data["driver"]):
                raise ValueError(f"the driver {data['driver']!r} is not an address (0x and 40"
                                 " hex digits)")
            return cls(str(data["driver"]), n[0], n[1], n[2], n[3], n[4], n[5], n[6],
                       str(data["signature"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an authorization: {exc}") from None

    @classmethod
    def from_request(cls, data: Any) -> Authorization:
        """What a driver hands in (an app start): as :meth:`from_json`, but only whole
        numbers - JSON integers, or strings of digits as wallets write a uint256 - an
        address and a 65-byte signature in hex are taken; nothing is rounded or coerced."""
        fields = _FIELDS
        if not isinstance(data, dict):
            raise ValueError("not an authorization: a JSON object is needed")
        missing = [f for f in fields if f not in data]
        if missing:
            raise ValueError(f"authorization lacks {missing}")
        driver, signature = data["driver"], data["signature"]
        if not isinstance(driver, str) or not ADDRESS.fullmatch(driver):
            raise ValueError("not an authorization: driver must be an address (0x + 40 hex)")
        if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
            raise ValueError("not an authorization: signature must be 0x + 65 bytes in hex")
        n = []
        for f in fields[1:8]:
            value = data[f]
            # a whole number (JSON, or a string of digits as wallets write a uint256): a
            # fraction, a boolean or another type is not rounded into one
            if isinstance(value, str) and value.isascii() and value.isdigit() \
                    and len(value) <= 78:
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"not an authorization: {f} must be a whole number")
            n.append(value)
        auth = cls(driver, n[0], n[1], n[2], n[3], n[4], n[5], n[6], signature)
        raw = bytes.fromhex(signature[2:])
        if raw[64] not in (0, 1, 27, 28) or int.from_bytes(raw[32:64], "big") \
                > SECP256K1_N // 2:
            # the same signature written otherwise (recover() takes it): the contract and
            # the receipt page read the form wallets sign, which is asked for, not made
            raise ValueError("not an authorization: the signature must be as wallets sign"
                             " (EIP-2: s in the lower half of the curve's order, v 27 or 28)")
        return auth


def domain_separator(chain_id: int, contract: str) -> bytes:
    return bytes(keccak(abi_encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [keccak(DOMAIN_TYPE.encode()), keccak(NAME.encode()), keccak(VERSION.encode()),
         chain_id, contract])))


def digest(auth: Authorization, chain_id: int, contract: str) -> bytes:
    struct = keccak(abi_encode(
        ["bytes32", "address", "uint256", "uint256", "uint256", "uint256", "uint256",
         "uint256", "uint256"],
        [keccak(AUTH_TYPE.encode()), auth.driver, auth.station, auth.max_per_kwh,
         auth.max_per_minute, auth.max_session_fee, auth.max_amount, auth.nonce,
         auth.expiry]))
    return bytes(keccak(b"\x19\x01" + domain_separator(chain_id, contract) + struct))


def typed_data(auth: Authorization, chain_id: int, contract: str) -> dict[str, Any]:
    """The EIP-712 message a wallet displays and signs (eth_signTypedData_v4)."""
    return {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"},
                             {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "SessionAuthorization": [
                {"name": n, "type": t} for n, t in (
                    ("driver", "address"), ("station", "uint256"), ("maxPerKwh", "uint256"),
                    ("maxPerMinute", "uint256"), ("maxSessionFee", "uint256"),
                    ("maxAmount", "uint256"), ("nonce", "uint256"), ("expiry", "uint256"))],
        },
        "primaryType": "SessionAuthorization",
        "domain": {"name": NAME, "version": VERSION, "chainId": chain_id,
                   "verifyingContract": contract},
        "message": {"driver": auth.driver, "station": auth.station,
                    "maxPerKwh": auth.max_per_kwh, "maxPerMinute": auth.max_per_minute,
                    "maxSessionFee": auth.max_session_fee, "maxAmount": auth.max_amount,
                    "nonce": auth.nonce, "expiry": auth.expiry},
    }


def sign(auth: Authorization, private_key: Any, chain_id: int, contract: str) -> Authorization:
    from eth_account import Account  # imported where used: 0.4 s (its keystores' BLS code)

    signed = Account.unsafe_sign_hash(digest(auth, chain_id, contract), private_key)
    raw = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])
    return Authorization(**{**auth.as_json(), "signature": "0x" + raw.hex()})


def recover(auth: Authorization, chain_id: int, contract: str) -> str:
    """The address that signed ``auth`` (compare it with ``auth.driver``)."""
    from eth_account import Account

    try:
        raw = bytes.fromhex(auth.signature.removeprefix("0x"))
        return str(Account._recover_hash(digest(auth, chain_id, contract), signature=raw))
    except Exception as exc:  # eth_keys raises several types for a bad signature
        raise ValueError(f"not a valid signature: {exc}") from None
