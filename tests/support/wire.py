"""A WebSocket client's bytes made by hand (RFC 6455): the upgrade request, client
frames, the server frames' headers. For tests that control what each read of the server
holds, which a WebSocket library does not let them do."""

from __future__ import annotations

import base64
import os
import socket

__all__ = ["client_frame", "frame_header", "is_switching", "upgrade_blocking", "upgrade_request"]


def upgrade_request(station: str, headers: str = "") -> bytes:
    """The HTTP request that opens an OCPP 1.6 WebSocket as ``station``; ``headers``: more
    header lines, each ending in CRLF."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /{station} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n{headers}"
            "\r\n").encode()


def is_switching(head: bytes) -> bool:
    """Whether the response head ``head`` says 101 Switching Protocols."""
    return b" 101 " in head.split(b"\r\n")[0]


def upgrade_blocking(s: socket.socket, station: str) -> None:
    """Open the WebSocket over blocking socket ``s`` (plain or TLS): the response's head is
    read byte by byte, nothing after it."""
    s.sendall(upgrade_request(station))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert is_switching(head), head


def client_frame(first: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """A client frame (§5.2) of first byte ``first`` (FIN, RSV bits, opcode), masked as
    clients must (a random key unless ``mask``), payload < 64 KiB."""
    mask = os.urandom(4) if mask is None else mask
    n = len(payload)
    head = bytes([first]) + (bytes([0x80 | n]) if n < 126
                             else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frame_header(buf: bytes | bytearray) -> tuple[int, int] | None:
    """(payload length, header size) of the server frame (unmasked) that ``buf`` starts
    with, None while its header is incomplete (§5.2)."""
    if len(buf) < 2:
        return None
    n, at = buf[1] & 0x7F, 2 + {126: 2, 127: 8}.get(buf[1] & 0x7F, 0)
    if len(buf) < at:
        return None
    return (int.from_bytes(buf[2:at], "big") if at > 2 else n), at
