from __future__ import annotations

from csms.service.ratelimit import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_limit_within_window_and_recovers() -> None:
    clock = Clock()
    rl = FailureLimiter(limit=3, window=10, clock=clock)
    for _ in range(2):
        rl.failed("ip:1", "id:CP1")
    assert not rl.blocked("ip:1")
    rl.failed("ip:1", "id:CP1")
    assert rl.blocked("ip:1") and rl.blocked("id:CP1") and rl.blocked("ip:9", "id:CP1")
    assert not rl.blocked("ip:2", "id:CP2")
    clock.now = 10.5
    assert not rl.blocked("ip:1", "id:CP1")


def test_success_clears() -> None:
    rl = FailureLimiter(limit=2, window=10, clock=Clock())
    rl.failed("a")
    rl.succeeded("a")
    rl.failed("a")
    assert not rl.blocked("a")


def test_memory_is_bounded() -> None:
    rl = FailureLimiter(limit=1, window=10, clock=Clock(), max_keys=100)
    for i in range(1000):
        rl.failed(f"ip:{i}")
    assert len(rl._failures) <= 100
