from __future__ import annotations

import pytest

from csms.protocol import InvalidStationId, OcppVersion, choose_subprotocol, station_id_from_path


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp1.6"], OcppVersion.V16),
        (["ocpp2.0.1"], OcppVersion.V201),
        (["ocpp1.6", "ocpp2.0.1"], OcppVersion.V16),  # the client's order wins
        (["ocpp2.0.1", "ocpp1.6"], OcppVersion.V201),
        (["ocpp2.1", "ocpp1.6"], OcppVersion.V16),
        (["ocpp1.5", "ocpp2.1"], None),
        ([], None),
    ],
)
def test_choose_subprotocol(offered: list[str], chosen: OcppVersion | None) -> None:
    assert choose_subprotocol(offered) is chosen


@pytest.mark.parametrize(
    ("text", "version"),
    [("1.6", OcppVersion.V16), ("ocpp2.0.1", OcppVersion.V201), (" 2.0.1 ", OcppVersion.V201)],
)
def test_parse_version(text: str, version: OcppVersion) -> None:
    assert OcppVersion.parse(text) is version


def test_parse_version_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown OCPP version"):
        OcppVersion.parse("1.5")


@pytest.mark.parametrize(
    ("path", "station_id"),
    [
        ("/CP1", "CP1"),
        ("/ocpp/CP1", "CP1"),
        ("/ocpp/CP1/", "CP1"),
        ("/CP%201", "CP 1"),
        ("/CP%2D1", "CP-1"),
        ("/CP1?x=1", "CP1"),
        ("/" + "A" * 48, "A" * 48),
    ],
)
def test_station_id_from_path(path: str, station_id: str) -> None:
    assert station_id_from_path(path) == station_id


@pytest.mark.parametrize(
    "path",
    ["/", "", "/" + "A" * 49, "/CP%3A1", "/CP:1", "/CP%2F1", "/CP%001", "/%FF%FE"],
)
def test_station_id_rejected(path: str) -> None:
    with pytest.raises(InvalidStationId):
        station_id_from_path(path)
