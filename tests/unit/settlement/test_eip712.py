"""A driver's signature, in each encoding that recovers the driver, as the contract reads it."""

from __future__ import annotations

import pytest
from eth_account import Account

from settlement.eip712 import SECP256K1_N, Authorization, recover, sign

CONTRACT = "0x" + "11" * 20


def encodings(signature: str) -> dict[str, str]:
    """The same signature written as wallets sign it and otherwise."""
    raw = bytes.fromhex(signature.removeprefix("0x"))
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    high = r + (SECP256K1_N - s).to_bytes(32, "big")
    return {"wallet": signature, "v 0/1": "0x" + (raw[:64] + bytes([v - 27])).hex(),
            "eip155 v": "0x" + (raw[:64] + bytes([35 + v - 27])).hex(),
            "high s": "0x" + (high + bytes([55 - v])).hex(),
            "high s, eip155 v": "0x" + (high + bytes([35 + 28 - v + 2])).hex()}


@pytest.mark.parametrize("nonce", range(6))  # signatures of both parities
def test_every_encoding_that_recovers_the_driver_is_sent_in_the_wallets_form(
        nonce: int) -> None:
    driver = Account.create()
    auth = sign(Authorization(driver.address, 3, 40, 0, 50, 500, nonce, 2**39), driver.key,
                31337, CONTRACT)
    assert int(auth.signature[66:130], 16) <= SECP256K1_N // 2
    for form, signature in encodings(auth.signature).items():
        other = Authorization(**{**auth.as_json(), "signature": signature})
        assert recover(other, 31337, CONTRACT) == driver.address, form
        assert other.canonical() == auth, form
        assert other.compact_signature() == auth.compact_signature(), form
        refused = form in ("eip155 v", "high s", "high s, eip155 v")
        if refused:
            with pytest.raises(ValueError, match="lower half"):
                Authorization.from_request(other.as_json())
        else:
            assert Authorization.from_request(other.as_json()) == other


@pytest.mark.parametrize("tail", ["02", "1d", "22"])  # v 2, 29, 34: no parity
def test_a_signature_without_a_parity_or_an_r_is_not_encoded(tail: str) -> None:
    driver = Account.create()
    auth = sign(Authorization(driver.address, 3, 40, 0, 50, 500, 1, 2**39), driver.key,
                31337, CONTRACT)
    with pytest.raises(ValueError):
        Authorization(**{**auth.as_json(), "signature": auth.signature[:-2] + tail}
                      ).compact_signature()
    with pytest.raises(ValueError):
        Authorization(**{**auth.as_json(), "signature": "0x" + "00" * 32
                         + auth.signature[66:]}).compact_signature()


def test_a_station_index_is_one_the_contract_can_register() -> None:
    """Indexes run to 2^40 - 1 (Settlement.vy register_station): one past 2^24 is signed
    for, 0 (none) and 2^40 are not."""
    driver = Account.create()
    for station in (2**24, 2**40 - 1):
        auth = sign(Authorization(driver.address, station, 40, 0, 50, 500, 1, 2**39),
                    driver.key, 31337, CONTRACT)
        assert recover(auth, 31337, CONTRACT) == driver.address
    for station in (0, 2**40):
        with pytest.raises(ValueError, match="station"):
            Authorization(driver.address, station, 40, 0, 50, 500, 1, 2**39)


def test_signatures_are_made_and_recovered_in_c_and_agree_with_pure_python() -> None:
    """eth-keys takes coincurve (secp256k1 in C) when it is installed, as it is with
    voltledger: what it signs and recovers is what the pure-Python backend does."""
    from eth_keys import KeyAPI
    from eth_keys.backends import CoinCurveECCBackend, NativeECCBackend

    assert isinstance(KeyAPI().backend, CoinCurveECCBackend)
    c, py = KeyAPI(CoinCurveECCBackend), KeyAPI(NativeECCBackend)
    for n in range(8):
        key = Account.create().key
        digest = bytes([n]) * 32
        made = c.PrivateKey(key).sign_msg_hash(digest)
        assert made == py.PrivateKey(key).sign_msg_hash(digest)  # RFC 6979: deterministic
        assert py.Signature(made.to_bytes()).recover_public_key_from_msg_hash(digest) == \
            c.Signature(made.to_bytes()).recover_public_key_from_msg_hash(digest) == \
            c.PrivateKey(key).public_key
