"""Login limiting for HTTP Basic auth (security profiles 1 and 2); time is injected.

Theory of operation. OCPP station passwords are 16 to 40 random characters
(1.6 security whitepaper, 2.0.1 A00.FR.2xx): guessing one is hopeless, so the
limits here protect the CPU, not the secret. A password check is a scrypt
derivation (~40 ms of CPU and 16 MiB); what must not happen is that strangers
make the server run thousands of them, or that their failures keep a station
out. Hence, in :meth:`LoginGuard.check`:

1. Credentials this node verified before (kept as a keyed hash in memory, tied
   to the stored password hash) are accepted without scrypt and without any
   limit: a station with the right password is never refused because of what
   others did, as soon as it logged in once since the node started.
2. An **attempt is counted before the check** against the remote address
   (an IPv6 /64 counts as one address): ``limit`` per ``window``. A success
   gives its own attempt back and nothing more (it never clears the failures
   of others); a refusal for being busy gives it back too (no check ran).
3. Checks are capped: ``concurrency`` in all, on a thread pool of that size,
   with a short queue (beyond it: 503, come back), so scrypt never saturates
   the threads other work needs, nor the event loop's core; and **one at a
   time per station**, the others **waiting in the station's line** (``line``
   logins, at most ``wait`` seconds) rather than told to come back.
4. The line is ordered, not first come first served: the address that last
   logged in for the station (since the node started) first, then the address
   with the fewest attempts in the window (its failures, its checks running),
   then the fewest busy refusals (its asking again at once), then arrival. When
   the line is full, a login that ranks before the last one takes its place
   (that one is refused: 503); otherwise it is refused itself.

Why the line. With one check per station and every other login told to come
back, strangers asking again at once kept a check of a station always running
and the station itself, after a restart, was answered 503 every time (~280
addresses of 5 attempts a minute are a check every 40 ms). Now a station that
asks keeps its place against every address that failed or was refused in the
last ``window``: to keep it out, strangers need an address never seen in the
window for each check that runs ahead of it, about 25 a second.

There is deliberately no limit per station id: failures for a station from
other addresses never refuse that station (the lockout the per-id limit made).

The counts are this process's, deliberately: what they protect is this process's CPU
and its pool of checks. Each worker of ``csms serve --workers`` (and each node) runs the
logins of the sockets it accepted on its own core, so a stranger spread over N of them
gets N times the attempts and costs each one no more than one process allows; the
secret is safe by its length, not by the count.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from csms.service import defaults

__all__ = ["AttemptLimiter", "LoginDelay", "LoginGuard", "LoginOutcome", "address_key"]


class AttemptLimiter:
    """At most ``limit`` attempts per key within ``window`` seconds."""

    def __init__(
        self, limit: int = defaults.AUTH_FAILURE_LIMIT, window: float = 60.0,
        clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._attempts: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float] | None:
        q = self._attempts.get(key)
        if q is None:
            return None
        cutoff = self.clock() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._attempts[key]
            return None
        return q

    def blocked(self, key: str) -> bool:
        q = self._recent(key)
        return q is not None and len(q) >= self.limit

    def take(self, key: str) -> bool:
        """Count one attempt now; False (nothing counted) when the key is at its limit."""
        q = self._recent(key)
        if q is not None and len(q) >= self.limit:
            return False
        if q is None:
            if len(self._attempts) >= self.max_keys:
                # Bound memory under a flood of distinct keys: forget the oldest.
                self._attempts.pop(next(iter(self._attempts)))
            q = self._attempts[key] = deque()
        q.append(self.clock())
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until the key may take an attempt again (0: it may now)."""
        q = self._recent(key)
        if q is None or len(q) < self.limit:
            return 0.0
        return max(0.0, q[-self.limit] + self.window - self.clock())

    def count(self, key: str) -> int:
        """The key's attempts within the window."""
        q = self._recent(key)
        return 0 if q is None else len(q)

    def give_back(self, key: str) -> None:
        """Undo this key's latest attempt (it succeeded, or no check ran)."""
        q = self._attempts.get(key)
        if q:
            q.pop()
            if not q:
                del self._attempts[key]


class LoginDelay:
    """Slows guessing of one secret that every client shares (the admin token): a wait
    before each check from an address, growing with that address's wrong attempts in the
    last ``window`` seconds, never a refusal. Time is injected.

    Why a wait and not a lockout: the clients of a loopback listener, or of one behind a
    TLS proxy, all have one address, and the secret has no user name beside it, so a limit
    that refused an address after ``free`` wrong attempts also refused the operator who
    knew it, for as long as a stranger kept guessing. The wait runs before the check, for
    the right secret too: answering it at once would tell a guesser that every answer
    slower than that is a wrong one. So the rightful operator waits ``cap`` seconds at
    most, and a guesser's rate is the sockets it may hold divided by ``cap``.

    ``free`` wrong attempts per window cost nothing; the next waits ``base`` seconds, each
    further one twice as long, up to ``cap``.
    """

    def __init__(self, free: int = 5, base: float = 0.5, cap: float = 4.0,
                 window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.free = free
        self.base = base
        self.cap = cap
        doublings = 0
        while base * 2 ** doublings < cap:
            doublings += 1
        # failures counted up to where the wait reaches the cap: no more memory per key
        self.failures = AttemptLimiter(free + doublings + 1, window, clock, max_keys)

    def wait(self, key: str) -> float:
        """Seconds an attempt from ``key`` waits before its check."""
        beyond = self.failures.count(key) - self.free
        if beyond < 0:
            return 0.0
        return float(min(self.cap, self.base * 2.0 ** beyond))

    def failed(self, key: str) -> None:
        """A wrong attempt from ``key``."""
        self.failures.take(key)


def address_key(address: str) -> str:
    """The limiter key of a remote address: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"ip:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"ip:{ip}"


class LoginOutcome(enum.Enum):
    ACCEPTED = "accepted"
    WRONG_PASSWORD = "wrong_password"  # 401
    RATE_LIMITED = "rate_limited"  # 429: this address used its attempts
    BUSY = "busy"  # 503: the station's line or the pool's queue is full, or the wait ended


# The logins a station's line holds, and how long one waits in it for its turn.
LINE = 2
LINE_WAIT = 5.0
REFUSALS_COUNTED = 4


@dataclass(order=True)
class _Waiter:
    """A login in a station's line; ``rank`` orders the line (lowest first)."""

    rank: tuple[int, int, int, int]
    turn: asyncio.Future[bool] = field(compare=False)


class LoginGuard:
    """Decides whether a password check runs, runs it, and remembers what it verified."""

    def __init__(
        self, verify: Callable[[str, str], bool], *, limit: int = defaults.AUTH_FAILURE_LIMIT,
        window: float = 60.0, concurrency: int = defaults.AUTH_CONCURRENCY,
        queue: int | None = None, line: int = LINE, wait: float = LINE_WAIT,
        clock: Callable[[], float] = time.monotonic, max_known: int = 100_000,
    ) -> None:
        self.verify = verify
        self.attempts = AttemptLimiter(limit, window, clock)
        # busy refusals per address, to rank lines (never a reason to refuse); counted
        # up to REFUSALS_COUNTED, so an address asking again at once costs no memory
        self.refusals = AttemptLimiter(REFUSALS_COUNTED, window, clock)
        self.line = max(0, line)
        self.wait = wait
        self.concurrency = max(1, concurrency)
        self.queue = self.concurrency * 8 if queue is None else queue
        self.max_known = max_known
        self._key = secrets.token_bytes(32)  # never leaves this process
        self._known: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._checking: set[str] = set()  # stations whose turn is taken
        self._lines: dict[str, list[_Waiter]] = {}
        self._arrivals = 0
        # station -> the address key that last logged in for it (first in its line)
        self._logged_in_from: OrderedDict[str, str] = OrderedDict()
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._executor: ThreadPoolExecutor | None = None
        # figures for tests and metrics
        self.checks = 0
        self.running = 0
        self.peak_running = 0

    def _digest(self, station_id: str, password: str) -> bytes:
        return hmac.new(self._key, f"{station_id}\0{password}".encode(), hashlib.sha256).digest()

    def known(self, station_id: str, stored: str, password: str) -> bool:
        """These credentials were verified against this stored hash before."""
        entry = self._known.get(station_id)
        if entry is None or entry[0] != stored:
            return False
        if not hmac.compare_digest(entry[1], self._digest(station_id, password)):
            return False
        self._known.move_to_end(station_id)
        return True

    def _remember(self, station_id: str, stored: str, password: str) -> None:
        self._known[station_id] = (stored, self._digest(station_id, password))
        self._known.move_to_end(station_id)
        while len(self._known) > self.max_known:
            self._known.popitem(last=False)

    def _rank(self, station_id: str, key: str) -> tuple[int, int, int, int]:
        self._arrivals += 1
        return (0 if self._logged_in_from.get(station_id) == key else 1,
                self.attempts.count(key), self.refusals.count(key), self._arrivals)

    def _join(self, station_id: str, key: str) -> _Waiter | None:
        """A place in the station's line, or None (full of logins that rank before)."""
        line = self._lines.setdefault(station_id, [])
        waiter = _Waiter(self._rank(station_id, key),
                         asyncio.get_running_loop().create_future())
        if len(line) >= self.line:
            last = max(line, default=None)
            if last is None or last <= waiter:
                if not line:
                    del self._lines[station_id]
                return None
            line.remove(last)
            last.turn.set_result(False)  # refused: its place is taken
        line.append(waiter)
        return waiter

    def _leave(self, station_id: str, waiter: _Waiter) -> None:
        line = self._lines.get(station_id)
        if line is not None and waiter in line:
            line.remove(waiter)
            if not line:
                del self._lines[station_id]

    def _pass_turn(self, station_id: str) -> None:
        """The station's check is over: the first of its line has the turn, if any."""
        line = self._lines.get(station_id)
        while line:
            first = min(line)
            line.remove(first)
            if not first.turn.done():
                first.turn.set_result(True)
                if not line:
                    del self._lines[station_id]
                return
        self._lines.pop(station_id, None)
        self._checking.discard(station_id)

    async def _wait_turn(self, station_id: str, key: str) -> bool:
        """Wait in the station's line; True once this login has the station's turn."""
        waiter = self._join(station_id, key)
        if waiter is None:
            return False
        try:
            await asyncio.wait((waiter.turn,), timeout=self.wait)
        except asyncio.CancelledError:
            if waiter.turn.done() and waiter.turn.result():
                self._pass_turn(station_id)  # given the turn as it was cancelled
            else:
                self._leave(station_id, waiter)
            raise
        if not waiter.turn.done():
            self._leave(station_id, waiter)  # waited long enough
            return False
        return waiter.turn.result()

    def forget(self, station_id: str) -> None:
        """The station's password changed: the next login is checked in full."""
        self._known.pop(station_id, None)

    async def check(self, address: str, station_id: str, stored: str,
                    password: str) -> LoginOutcome:
        if self.known(station_id, stored, password):
            return LoginOutcome.ACCEPTED
        key = address_key(address)
        if not self.attempts.take(key):
            return LoginOutcome.RATE_LIMITED
        try:
            turn = self._waiting < self.queue and (
                station_id not in self._checking or await self._wait_turn(station_id, key))
        except asyncio.CancelledError:
            self.attempts.give_back(key)
            raise
        if not turn:
            self.attempts.give_back(key)
            self.refusals.take(key)
            return LoginOutcome.BUSY
        # this login has the station's turn until its check is over (or never starts)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
            self._executor = ThreadPoolExecutor(self.concurrency,
                                                thread_name_prefix="password-check")
        slots = self._slots
        self._checking.add(station_id)
        started = False
        try:
            self._waiting += 1
            try:
                await slots.acquire()
            finally:
                self._waiting -= 1
            self.checks += 1
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            job = asyncio.get_running_loop().run_in_executor(
                self._executor, self.verify, password, stored)
            started = True

            def done(_: object) -> None:
                # The slots are free when the thread is, even if the login was
                # cancelled meanwhile (a running scrypt cannot be stopped).
                self.running -= 1
                self._pass_turn(station_id)
                slots.release()

            job.add_done_callback(done)
            ok = await asyncio.shield(job)
        finally:
            if not started:
                self._pass_turn(station_id)
        if not ok:
            return LoginOutcome.WRONG_PASSWORD
        self.attempts.give_back(key)
        self._remember(station_id, stored, password)
        self._logged_in_from[station_id] = key
        self._logged_in_from.move_to_end(station_id)
        while len(self._logged_in_from) > self.max_known:
            self._logged_in_from.popitem(last=False)
        return LoginOutcome.ACCEPTED

    def close(self) -> None:
        for line in self._lines.values():  # the logins waiting are told to come back
            for waiter in line:
                if not waiter.turn.done():
                    waiter.turn.set_result(False)
        self._lines.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._slots = None
