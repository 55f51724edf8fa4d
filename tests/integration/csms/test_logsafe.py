"""What a hostile station's text costs the log filter (csms.logsafe), over real sockets.

Every log line passes :class:`csms.logsafe.SecretFilter` on the event loop; a line may
quote what a station sent (a CALLERROR's description, an exception's text). Redacting it
must cost time in proportion to its length, or one station stalls every other."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from support import RunningServer
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0"}


async def test_a_long_callerror_description_does_not_stall_other_stations(
        csms_server: RunningServer) -> None:
    """A 1.6 station answers the boot's GetConfiguration with a CALLERROR whose
    description is one frame of 'password' repeated: the warning that quotes it
    ('not answered: CallFailed(...)') is redacted with a regular expression that
    backtracks over every 'password' for each one, seconds of the event loop."""
    server = csms_server
    await server.stop()
    server.settings = replace(server.settings, boot_get_configuration=True)
    await server.start()
    await server.add_station("HOSTILE")
    await server.add_station("GOOD")
    async with await RawClient.connect(server.url, "GOOD") as good, \
            await RawClient.connect(server.url, "HOSTILE") as hostile:
        assert "currentTime" in await good.result("Heartbeat", {})
        await hostile.result("BootNotification", BOOT16)
        call = await asyncio.wait_for(hostile.calls.get(), 5)
        assert call[2] == "GetConfiguration"
        limit = server.settings.max_frame_bytes
        description = "password" * ((limit - 100) // 8)
        # the server runs in this process: the time from the hostile answer to the other
        # station's answer is what the server's loop was held
        started = time.perf_counter()
        await hostile.send_raw(f'[4,"{call[1]}","GenericError","{description}",{{}}]')
        answer = await good.call("Heartbeat", {}, timeout=120)
        waited = time.perf_counter() - started
        assert answer[0] == 3
    # a liveness bound, generous: 1.4-4.6 ms now, 7.4 s before
    assert waited < 1.0, f"another station's Heartbeat waited {waited:.2f} s"
