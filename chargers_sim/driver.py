"""More of a simulated station's answers: its authorization cache (filled by Authorize,
emptied by ClearCache), its installed charging profiles and the composite schedule they
make, display messages, network profiles, the cost it shows the driver, customer data,
and every message TriggerMessage may ask for. What differs per version is in
:mod:`chargers_sim.more_v16` / :mod:`chargers_sim.more_v201`, picked once here."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from chargers_sim import more_v16, more_v201
from chargers_sim.connection import CallRejected
from chargers_sim.handlers import Answer, CallHandlers
from chargers_sim.session import CompletedSession
from csms.protocol import OcppVersion

__all__ = ["DriverHandlers", "composite_periods"]

_PHASE_W_PER_A = 230.0 * 3  # three phases at 230 V


class MoreRules(Protocol):
    def id_info(self, answer: dict[str, Any]) -> dict[str, Any]: ...
    def group_of(self, info: dict[str, Any]) -> str | None: ...
    def profile_of(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...
    def composite_answer(self, connector: int, unit: str, duration: int,
                         periods: list[dict[str, Any]]) -> dict[str, Any]: ...
    def shown_cost(self, p: dict[str, Any]) -> tuple[str, float] | None: ...
    def master_pass_group(self, st: DriverHandlers) -> str | None: ...
    def triggered(self, st: DriverHandlers, what: str, connector: int | None
                  ) -> list[tuple[str, dict[str, Any]]] | None: ...
    def handlers(self, st: DriverHandlers) -> dict[str, Answer]: ...


_MORE: dict[OcppVersion, MoreRules] = {OcppVersion.V16: more_v16, OcppVersion.V201: more_v201}


def _in_unit(limit: float, from_unit: str, to_unit: str) -> float:
    if from_unit == to_unit:
        return limit
    return limit * _PHASE_W_PER_A if to_unit == "W" else limit / _PHASE_W_PER_A


def composite_periods(profiles: list[dict[str, Any]], unit: str, duration: int
                      ) -> list[dict[str, Any]]:
    """The composite schedule of installed profiles over ``duration`` seconds (1.6 §3.13.5,
    2.0.1 K08): within a purpose the highest stack level wins; across purposes the lowest
    limit. Schedules are read as relative to now; limits converted to ``unit``."""
    best: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        purpose = profile["chargingProfilePurpose"]
        if purpose not in best or profile["stackLevel"] > best[purpose]["stackLevel"]:
            best[purpose] = profile
    schedules = [p["chargingSchedule"][0] for p in best.values()]
    starts = sorted({int(period["startPeriod"]) for s in schedules
                     for period in s["chargingSchedulePeriod"]
                     if int(period["startPeriod"]) < duration} | {0})
    out: list[dict[str, Any]] = []
    for start in starts:
        limits = []
        for s in schedules:
            current = [p for p in s["chargingSchedulePeriod"] if int(p["startPeriod"]) <= start]
            if current:
                limits.append(_in_unit(float(current[-1]["limit"]), s["chargingRateUnit"],
                                       unit))
        if limits:
            limit = round(min(limits), 1)
            if not out or out[-1]["limit"] != limit:
                out.append({"startPeriod": start, "limit": limit})
    return out


class DriverHandlers(CallHandlers):
    """The answers of :mod:`chargers_sim.handlers`, and those above."""

    def _setup(self) -> None:
        super()._setup()
        self.more: MoreRules = _MORE[self.version]
        self.auth_cache: dict[str, dict[str, Any]] = {}  # tag -> idTagInfo / idTokenInfo
        self.profiles: dict[tuple[int, int], dict[str, Any]] = {}  # (connector, id) -> profile
        self.display_messages: dict[int, dict[str, Any]] = {}
        self.network_profiles: dict[int, dict[str, Any]] = {}
        # 1.6: announces the OCA running-cost DataTransfer (California Pricing whitepaper)
        self.config["CustomDisplayCostAndPrice"] = "false"

    def _handlers(self) -> dict[str, Answer]:
        return {
            **super()._handlers(),
            "TriggerMessage": self._trigger_any,
            "SetChargingProfile": self._install_profile,
            "ClearChargingProfile": self._remove_profiles,
            "DataTransfer": self._cost_transfer,
            "ClearCache": self._clear_cache,
            "GetCompositeSchedule": self._composite,
            **self.more.handlers(self),
        }

    async def authorize(self, id_tag: str) -> str:
        answer = await self.call("Authorize", self.rules.authorize_payload(id_tag))
        info = self.more.id_info(answer)
        if info.get("status") == "Accepted":
            self.auth_cache[id_tag] = info  # 1.6 §3.5.2 / 2.0.1 C10: the cache
        else:
            self.auth_cache.pop(id_tag, None)
        return self.rules.authorize_status(answer)

    def group(self, id_tag: str) -> str | None:
        """The tag's group as the central system last answered it."""
        info = self.auth_cache.get(id_tag)
        return self.more.group_of(info) if info else None

    def is_master_pass(self, id_tag: str) -> bool:
        """2.0.1 C16: the tag's group (as last answered) is the station's
        AuthCtrlr.MasterPassGroupId, which the central system sets."""
        master = self.more.master_pass_group(self)
        return bool(master) and self.group(id_tag) == master

    def refuses_start(self, id_tag: str) -> bool:
        return self.is_master_pass(id_tag)  # C16: a master pass starts no transaction

    async def present_master_pass(self, id_tag: str) -> list[CompletedSession]:
        """The tag is presented to a station without a UI: authorized, and if it is a
        master pass, every ongoing transaction is stopped (C16.FR.02, stoppedReason
        MasterPass, C16.FR.08) with its idToken; else nothing happens."""
        with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
            await self.authorize(id_tag)
        if not self.is_master_pass(id_tag):
            return []
        return [await self.stop_session(c, "MasterPass", stop_tag=id_tag)
                for c in sorted(self._sessions)]

    def _clear_cache(self, p: dict[str, Any]) -> dict[str, Any]:
        self.auth_cache.clear()
        return {"status": "Accepted"}

    def _install_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = self._set_profile(p)
        connector, profile = self.more.profile_of(p)
        self.profiles[connector, int(profile["id"])] = profile
        return answer

    def _remove_profiles(self, p: dict[str, Any]) -> dict[str, Any]:
        wanted = p.get("id", p.get("chargingProfileId"))
        if wanted is None:
            had = bool(self.profiles)
            self.profiles.clear()
            self.limit_w.clear()
            return {"status": "Accepted" if had else "Unknown"}
        keys = [k for k in self.profiles if k[1] == int(wanted)]
        for k in keys:
            del self.profiles[k]
            if not any(c == k[0] for c, _ in self.profiles):
                self.limit_w.pop(k[0], None)
        return {"status": "Accepted" if keys else "Unknown"}

    def _composite(self, p: dict[str, Any]) -> dict[str, Any]:
        connector = int(p.get("connectorId", p.get("evseId", 0)))
        if connector and connector not in self.meters:
            return {"status": "Rejected"}
        mine = [prof for (c, _), prof in self.profiles.items() if c in (0, connector)]
        if not mine:
            return {"status": "Rejected"}  # no profile: nothing to compose
        unit = p.get("chargingRateUnit") or mine[0]["chargingSchedule"][0]["chargingRateUnit"]
        duration = int(p["duration"])
        return self.more.composite_answer(connector, unit, duration,
                                          composite_periods(mine, unit, duration))

    def _cost_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.config.get("CustomDisplayCostAndPrice") == "true":
            shown = self.more.shown_cost(p)
            if shown is not None:
                self.shown_cost[shown[0]] = shown[1]
                return {"status": "Accepted"}
        return self._data_transfer(p)

    def _trigger_any(self, p: dict[str, Any]) -> dict[str, Any]:
        connector = p.get("connectorId", (p.get("evse") or {}).get("id"))
        return {"status": self._send_triggered(p["requestedMessage"], connector)}

    def _send_triggered(self, what: str, connector: int | None) -> str:
        """Send what a TriggerMessage asked for, after its answer (1.6 §5.17, 2.0.1 F06)."""
        charging = [s for c, s in self._sessions.items() if connector in (None, 0, c)]
        if what == "MeterValues" and charging:
            for s in charging:  # a session's readings go through its transaction queue
                self._enqueue_meter(s)
            return "Accepted"
        messages = self.more.triggered(self, what, connector)
        if messages is None:
            return "Rejected"

        async def send_all() -> None:
            await asyncio.sleep(0.05)  # the answer to TriggerMessage goes out first
            for action, payload in messages:
                with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                    await self.call(action, payload)

        self._spawn(send_all(), "trigger")
        return "Accepted"
