from __future__ import annotations

import asyncio
import threading

import pytest

from csms.service.ratelimit import (
    AttemptLimiter,
    LoginDelay,
    LoginGuard,
    LoginOutcome,
    address_key,
)

RIGHT = "the-right-password-123"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_attempts_are_limited_within_the_window_and_recover() -> None:
    clock = Clock()
    rl = AttemptLimiter(limit=3, window=10, clock=clock)
    assert all(rl.take("ip:1") for _ in range(3))
    assert not rl.take("ip:1") and rl.blocked("ip:1")
    assert rl.take("ip:2")
    clock.now = 10.5
    assert rl.take("ip:1")


def test_retry_after_is_when_the_window_frees_an_attempt() -> None:
    clock = Clock()
    rl = AttemptLimiter(limit=2, window=10, clock=clock)
    assert rl.retry_after("a") == 0
    rl.take("a")
    clock.now = 4.0
    rl.take("a")
    assert rl.retry_after("a") == 6.0  # the first attempt leaves the window at 10
    clock.now = 10.5
    assert rl.retry_after("a") == 0 and rl.take("a")
    assert rl.retry_after("a") == 3.5  # the attempt at 4 leaves it next


def test_give_back_undoes_one_attempt_only() -> None:
    rl = AttemptLimiter(limit=2, window=10, clock=Clock())
    rl.take("a")
    rl.take("a")
    rl.give_back("a")
    assert rl.take("a")
    assert not rl.take("a")


def test_memory_is_bounded() -> None:
    rl = AttemptLimiter(limit=1, window=10, clock=Clock(), max_keys=100)
    for i in range(1000):
        rl.take(f"ip:{i}")
    assert len(rl._attempts) <= 100


@pytest.mark.parametrize(("address", "key"), [
    ("127.0.0.7", "ip:127.0.0.7"),
    ("2001:db8:1:2:aaaa::1", "ip:2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "ip:2001:db8:1:2::/64"),  # same /64: one address
    ("::ffff:10.0.0.1", "ip:10.0.0.1"),
    ("?", "ip:?"),
])
def test_address_key(address: str, key: str) -> None:
    assert address_key(address) == key


class SlowVerify:
    """A password check that blocks until released, counting the checks it ran."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.order: list[str] = []  # the passwords checked, in order
        self.lock = threading.Lock()

    def __call__(self, password: str, stored: str) -> bool:
        with self.lock:
            self.calls += 1
            self.order.append(password)
        self.gate.wait(10)
        return password == RIGHT


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_one_check_per_station_a_line_waits_the_rest_come_back_later() -> None:
    """50 logins for one station at once: one check runs, `line` logins wait for their
    turn (one at a time, though the pool has room for four), the rest are told to come
    back at once (no attempt used)."""
    verify = SlowVerify()
    guard = LoginGuard(verify, limit=5, concurrency=4, line=8)
    tasks = [asyncio.create_task(guard.check(f"10.0.0.{i}", "CP1", "h", "wrong-password-xx"))
             for i in range(50)]
    await settle()
    busy = [t for t in tasks if t.done()]
    assert len(busy) == 41 and all(t.result() is LoginOutcome.BUSY for t in busy)
    assert guard.running == 1 and verify.calls == 1
    verify.gate.set()
    assert await asyncio.gather(*tasks) == [LoginOutcome.WRONG_PASSWORD] * 9 + [
        LoginOutcome.BUSY] * 41
    assert verify.calls == 9 and guard.peak_running == 1
    assert all(guard.attempts.count(f"ip:10.0.0.{i}") == 0 for i in range(9, 50))
    guard.close()


async def started(verify: SlowVerify, calls: int) -> None:
    for _ in range(200):
        if verify.calls >= calls:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{calls} checks did not start")


async def test_a_station_keeps_its_place_against_strangers_who_failed() -> None:
    """Strangers who failed a check in the window fill the station's line behind a
    running check: the station, asking after them, takes the place of the last one and
    is checked next (the first station's login after a restart, nothing remembered)."""
    verify = SlowVerify()
    verify.gate.set()
    guard = LoginGuard(verify, limit=5, concurrency=2, line=2)
    strangers = [f"10.0.0.{i}" for i in (1, 2, 3)]
    for address in strangers:  # one failure each
        assert await guard.check(address, "CP1", "h", f"wrong-{address}") \
            is LoginOutcome.WRONG_PASSWORD
    verify.gate.clear()
    tasks = [asyncio.create_task(guard.check(a, "CP1", "h", f"wrong-{a}")) for a in strangers]
    await started(verify, 4)
    await settle()
    assert not any(t.done() for t in tasks)  # one running, two in the line
    station = asyncio.create_task(guard.check("10.0.0.9", "CP1", "h", RIGHT))
    await settle()
    assert tasks[2].done() and tasks[2].result() is LoginOutcome.BUSY  # gave its place
    verify.gate.set()
    assert await station is LoginOutcome.ACCEPTED
    assert [await t for t in tasks[:2]] == [LoginOutcome.WRONG_PASSWORD] * 2
    assert verify.order[3:] == ["wrong-10.0.0.1", RIGHT, "wrong-10.0.0.2"]
    guard.close()


async def test_strangers_asking_again_at_once_rank_after_a_station() -> None:
    """An address told to come back that asks again at once: its refusal counts against
    its rank, so a station asking after it takes its place in the line."""
    verify = SlowVerify()
    guard = LoginGuard(verify, limit=5, concurrency=2, line=1)
    first = asyncio.create_task(guard.check("10.0.0.1", "CP1", "h", "wrong-1"))
    await started(verify, 1)
    waiting = asyncio.create_task(guard.check("10.0.0.2", "CP1", "h", "wrong-2"))
    await settle()
    # the line is full of one that ranks the same: refused
    assert await guard.check("10.0.0.3", "CP1", "h", "wrong-3") is LoginOutcome.BUSY
    waiting.cancel()
    await settle()
    # room again: it asks again and waits, ranked by its refusal
    again = asyncio.create_task(guard.check("10.0.0.3", "CP1", "h", "wrong-3"))
    await settle()
    assert not again.done()
    station = asyncio.create_task(guard.check("10.0.0.9", "CP1", "h", RIGHT))
    await settle()
    assert again.done() and again.result() is LoginOutcome.BUSY
    verify.gate.set()
    assert await station is LoginOutcome.ACCEPTED
    assert await first is LoginOutcome.WRONG_PASSWORD
    assert verify.order == ["wrong-1", RIGHT]
    guard.close()


async def test_the_address_a_station_last_logged_in_from_goes_first() -> None:
    """The station's password was changed (its credentials forgotten): the address it last
    logged in from is checked before strangers that asked before it."""
    verify = SlowVerify()
    verify.gate.set()
    guard = LoginGuard(verify, limit=5, concurrency=2, line=4)
    assert await guard.check("10.0.0.9", "CP1", "h", RIGHT) is LoginOutcome.ACCEPTED
    guard.forget("CP1")
    verify.gate.clear()
    tasks = [asyncio.create_task(guard.check(f"10.0.0.{i}", "CP1", "h2", f"wrong-{i}"))
             for i in (1, 2, 3)]
    await started(verify, 2)
    station = asyncio.create_task(guard.check("10.0.0.9", "CP1", "h2", RIGHT))
    await settle()
    verify.gate.set()
    assert await station is LoginOutcome.ACCEPTED
    await asyncio.gather(*tasks)
    assert verify.order[1:] == ["wrong-1", RIGHT, "wrong-2", "wrong-3"]
    guard.close()


async def test_a_login_waits_in_the_line_no_longer_than_wait() -> None:
    verify = SlowVerify()
    guard = LoginGuard(verify, limit=5, concurrency=2, line=4, wait=0.2)
    first = asyncio.create_task(guard.check("10.0.0.1", "CP1", "h", "wrong-1"))
    await started(verify, 1)
    assert await guard.check("10.0.0.2", "CP1", "h", RIGHT) is LoginOutcome.BUSY
    # no check ran for it: its attempt is given back, the refusal counted
    assert guard.attempts.count("ip:10.0.0.2") == 0
    assert guard.refusals.count("ip:10.0.0.2") == 1
    assert "CP1" not in guard._lines  # it left the line
    verify.gate.set()
    assert await first is LoginOutcome.WRONG_PASSWORD
    assert await guard.check("10.0.0.2", "CP1", "h", RIGHT) is LoginOutcome.ACCEPTED
    guard.close()


async def test_the_logins_in_line_are_refused_when_the_guard_closes() -> None:
    verify = SlowVerify()
    guard = LoginGuard(verify, limit=5, concurrency=2, line=4)
    first = asyncio.create_task(guard.check("10.0.0.1", "CP1", "h", "wrong-1"))
    await started(verify, 1)
    waiting = asyncio.create_task(guard.check("10.0.0.2", "CP1", "h", RIGHT))
    await settle()
    guard.close()
    assert await asyncio.wait_for(waiting, 1) is LoginOutcome.BUSY
    verify.gate.set()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


async def test_a_cancelled_login_leaves_the_line() -> None:
    """A login cancelled in the line (its handshake timed out) leaves it, its attempt
    given back; the turn goes to the next one."""
    verify = SlowVerify()
    guard = LoginGuard(verify, limit=5, concurrency=2, line=4)
    first = asyncio.create_task(guard.check("10.0.0.1", "CP1", "h", "wrong-1"))
    await started(verify, 1)
    gone = asyncio.create_task(guard.check("10.0.0.2", "CP1", "h", "wrong-2"))
    after = asyncio.create_task(guard.check("10.0.0.3", "CP1", "h", RIGHT))
    await settle()
    gone.cancel()
    await settle()
    assert len(guard._lines["CP1"]) == 1 and guard.attempts.count("ip:10.0.0.2") == 0
    verify.gate.set()
    assert await first is LoginOutcome.WRONG_PASSWORD
    assert await after is LoginOutcome.ACCEPTED
    assert verify.order == ["wrong-1", RIGHT]
    assert "CP1" not in guard._lines and "CP1" not in guard._checking
    guard.close()


async def test_checks_in_all_are_capped_and_queued() -> None:
    verify = SlowVerify()
    guard = LoginGuard(verify, limit=5, concurrency=2, queue=3)
    tasks = [asyncio.create_task(guard.check(f"10.0.0.{i}", f"CP{i}", "h", "wrong-password-xx"))
             for i in range(10)]
    await settle()
    assert guard.running == 2 and guard._waiting == 3
    verify.gate.set()
    outcomes = await asyncio.gather(*tasks)
    # 2 ran, 3 waited and ran; the rest were told to come back (no attempt used)
    assert outcomes.count(LoginOutcome.WRONG_PASSWORD) == 5
    assert outcomes.count(LoginOutcome.BUSY) == 5
    assert guard.peak_running == 2 and verify.calls == 5
    guard.close()


async def test_attempt_counted_before_the_check() -> None:
    verify = SlowVerify()
    guard = LoginGuard(verify, limit=2, concurrency=8)
    # one address, several stations at once: only `limit` checks start
    tasks = [asyncio.create_task(guard.check("10.0.0.1", f"CP{i}", "h", "wrong-password-xx"))
             for i in range(10)]
    await settle()
    verify.gate.set()
    outcomes = await asyncio.gather(*tasks)
    assert outcomes.count(LoginOutcome.RATE_LIMITED) == 8
    assert verify.calls == 2
    guard.close()


async def test_a_success_does_not_reset_the_failures() -> None:
    verify = SlowVerify()
    verify.gate.set()
    guard = LoginGuard(verify, limit=3, concurrency=1)
    # an address that owns station A and guesses station B's password
    for _ in range(2):
        assert await guard.check("10.0.0.1", "B", "hb", "guess-guess-guess") \
            is LoginOutcome.WRONG_PASSWORD
        assert await guard.check("10.0.0.1", "A", "ha", RIGHT) is LoginOutcome.ACCEPTED
    assert await guard.check("10.0.0.1", "B", "hb", "guess-guess-guess") \
        is LoginOutcome.WRONG_PASSWORD
    assert await guard.check("10.0.0.1", "B", "hb", "guess-guess-guess") \
        is LoginOutcome.RATE_LIMITED
    guard.close()


async def test_verified_credentials_skip_the_limits() -> None:
    verify = SlowVerify()
    verify.gate.set()
    guard = LoginGuard(verify, limit=1, concurrency=1)
    assert await guard.check("10.0.0.1", "CP1", "h1", RIGHT) is LoginOutcome.ACCEPTED
    # strangers use up the budget of an address, and keep the station's slot busy
    assert await guard.check("10.0.0.1", "CP1", "h1", "nope-nope-nope-nope") \
        is LoginOutcome.WRONG_PASSWORD
    verify.gate.clear()
    stuck = asyncio.create_task(guard.check("10.0.0.2", "CP1", "h1", "nope-nope-nope-nope"))
    await settle()
    # the station with the right password: no scrypt, no limit, from any address
    assert await guard.check("10.0.0.1", "CP1", "h1", RIGHT) is LoginOutcome.ACCEPTED
    assert await guard.check("10.0.0.3", "CP1", "h1", RIGHT) is LoginOutcome.ACCEPTED
    # a new stored hash (password rotated) means a full check again
    assert not guard.known("CP1", "h2", RIGHT)
    verify.gate.set()
    assert await stuck is LoginOutcome.WRONG_PASSWORD
    assert verify.calls == 3
    guard.close()


async def test_a_cancelled_login_frees_its_slots_when_the_thread_is_done() -> None:
    verify = SlowVerify()
    guard = LoginGuard(verify, limit=5, concurrency=1)
    task = asyncio.create_task(guard.check("10.0.0.1", "CP1", "h", "wrong-password-xx"))
    await settle()
    task.cancel()
    await settle()
    # the scrypt thread still runs: the station's slot and the pool slot stay taken
    assert await guard.check("10.0.0.2", "CP1", "h", RIGHT) is LoginOutcome.BUSY
    verify.gate.set()
    await settle()
    assert await guard.check("10.0.0.2", "CP1", "h", RIGHT) is LoginOutcome.ACCEPTED
    guard.close()


def test_login_delay_grows_with_an_addresss_failures_up_to_the_cap_and_recovers() -> None:
    clock = Clock()
    delays = LoginDelay(free=3, base=0.5, cap=4.0, window=60, clock=clock)
    waits = []
    for _ in range(10):
        waits.append(delays.wait("ip:1"))
        delays.failed("ip:1")
    assert waits == [0, 0, 0, 0.5, 1, 2, 4, 4, 4, 4]
    assert delays.wait("ip:2") == 0  # another address
    clock.now = 61
    assert delays.wait("ip:1") == 0  # the window passed
    assert len(delays.failures._attempts) == 0
