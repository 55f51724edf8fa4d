from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chargers_sim.ocmf import MeterSigner, split_container


def test_container_verifies_with_the_public_key() -> None:
    signer = MeterSigner.generate("M-1")
    container = signer.container(station_id="CP1", id_tag="TAG", register_wh=1234567,
                                 at=datetime(2026, 1, 1, tzinfo=UTC), kind="B", pagination=1)
    payload, signature = split_container(container)
    assert signature["SA"] == "ECDSA-secp256r1-SHA256"
    data = json.loads(payload)
    assert data["RD"][0]["RV"] == 1234.567 and data["RD"][0]["TX"] == "B"
    assert data["RD"][0]["TM"] == "2026-01-01T00:00:00,000+0000 S"
    key = serialization.load_der_public_key(signer.public_key_der)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(bytes.fromhex(signature["SD"]), payload.encode(), ec.ECDSA(hashes.SHA256()))
    tampered = payload.replace("1234.567", "1234.568")
    with pytest.raises(InvalidSignature):
        key.verify(bytes.fromhex(signature["SD"]), tampered.encode(), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("bad", ["OCPP|{}|{}", "OCMF|{}", "nothing",
                                 'OCMF|{"ID":"a|b"}|{}', "OCMF|{}|{}|KEY|more"])
def test_split_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        split_container(bad)
