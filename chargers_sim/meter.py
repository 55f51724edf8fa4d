"""A simulated energy meter and power curve (pure; time is passed in)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = ["Meter", "power_curve_w"]


def power_curve_w(elapsed_s: float, max_power_w: float, limit_w: float | None = None) -> float:
    """Plausible charging power: a 30 s ramp up, then a slow taper as the battery fills.

    ``limit_w`` is the cap of an active charging profile (SetChargingProfile).
    """
    ramp = min(1.0, elapsed_s / 30.0)
    taper = 1.0 - 0.2 * (1.0 - math.exp(-elapsed_s / 3600.0))
    power = max_power_w * ramp * taper
    if limit_w is not None:
        power = min(power, limit_w)
    return max(power, 0.0)


@dataclass
class Meter:
    """An Energy.Active.Import.Register in whole Wh that only counts up.

    It starts at a random lifetime reading so that a central system billing the
    register instead of the difference is caught at once.
    """

    register_wh: int = 0
    voltage_v: float = 230.0
    phases: int = 3
    _joules: float = field(default=0.0, repr=False)  # not yet a whole Wh
    last_power_w: float = 0.0

    @classmethod
    def with_lifetime(cls, rng: random.Random) -> Meter:
        return cls(register_wh=rng.randint(1_000_000, 5_000_000))

    def advance(self, power_w: float, seconds: float) -> int:
        """Integrate ``power_w`` over ``seconds``; return the new register reading."""
        self.last_power_w = power_w
        # Accumulate joules (W*s): sums of whole watt-seconds stay exact in floats,
        # where adding fractions of a Wh would drift.
        self._joules += power_w * seconds
        whole = int(self._joules // 3600)
        self._joules -= whole * 3600
        self.register_wh += whole
        return self.register_wh

    def current_a(self) -> float:
        """Per-phase current for the last power."""
        return self.last_power_w / (self.voltage_v * self.phases)
