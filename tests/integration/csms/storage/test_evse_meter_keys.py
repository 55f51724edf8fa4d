"""The meter keys an operator registered per EVSE (a wallbox with one calibrated meter per
EVSE), on SQLite and PostgreSQL: set, replaced, removed, per station; the station's own key
beside them untouched."""

from __future__ import annotations

from csms.service.ports import Repository, Tx

from .test_tx import station, unit


async def test_keys_per_evse_are_set_replaced_and_removed(repo: Repository) -> None:
    async def setup(tx: Tx) -> None:
        for sid in ("CP1", "CP2"):
            await tx.insert_station(station(sid))
        await tx.set_meter_key("CP1", "aa", "operator")
        await tx.set_evse_meter_key("CP1", 2, "b2")
        await tx.set_evse_meter_key("CP1", 1, "b1")
        await tx.set_evse_meter_key("CP2", 1, "c1")
        await tx.set_evse_meter_key("CP1", 2, "b2-new")  # replaces EVSE 2's

    await unit(repo, setup)
    assert await repo.read(lambda tx: tx.get_evse_meter_keys("CP1")) == {1: "b1", 2: "b2-new"}
    assert await repo.read(lambda tx: tx.get_evse_meter_keys("CP2")) == {1: "c1"}
    assert await repo.read(lambda tx: tx.get_evse_meter_keys("NOPE")) == {}

    async def remove(tx: Tx) -> None:
        await tx.set_evse_meter_key("CP1", 1, None)
        await tx.set_evse_meter_key("CP1", 7, None)  # none there: nothing to remove

    await unit(repo, remove)
    assert await repo.read(lambda tx: tx.get_evse_meter_keys("CP1")) == {2: "b2-new"}
    assert await repo.read(lambda tx: tx.get_evse_meter_keys("CP2")) == {1: "c1"}
    assert await repo.read(lambda tx: tx.get_meter_key("CP1")) == ("aa", "operator")


async def test_an_evse_id_beyond_32_bits_is_kept(repo: Repository) -> None:
    # the CLI takes an EVSE up to a bigint, as the sessions' evse_id column holds it
    big = 2**63 - 1

    async def setup(tx: Tx) -> None:
        await tx.insert_station(station("CP1"))
        await tx.set_evse_meter_key("CP1", big, "k")

    await unit(repo, setup)
    assert await repo.read(lambda tx: tx.get_evse_meter_keys("CP1")) == {big: "k"}
