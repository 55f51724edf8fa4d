"""Which Host headers the admin listener answers (DNS rebinding): a table of the header,
the address the request reached, and the answer."""

from __future__ import annotations

import pytest

from csms.admin.listener import AdminHosts


@pytest.mark.parametrize(("bound", "names", "header", "local", "served"), [
    # loopback: localhost and loopback addresses, whatever port
    ("127.0.0.1", (), "localhost:9001", "127.0.0.1", True),
    ("127.0.0.1", (), "127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", (), "[::1]:9001", "127.0.0.1", True),
    ("127.0.0.1", (), "127.8.9.10", "127.0.0.1", True),
    # a name re-resolved to loopback: refused, even one that looks local
    ("127.0.0.1", (), "evil.example", "127.0.0.1", False),
    ("127.0.0.1", (), "localhost.evil.example", "127.0.0.1", False),
    ("127.0.0.1", (), "127.0.0.1.nip.io", "127.0.0.1", False),
    ("127.0.0.1", (), "evil.example:9001", "127.0.0.1", False),
    ("127.0.0.1", (), "ev il", "127.0.0.1", False),
    # no Host header (HTTP/1.0): no browser sends such a request
    ("127.0.0.1", (), None, "127.0.0.1", True),
    # the names the operator gave, in any case, with or without a port or a final dot
    ("127.0.0.1", ("csms.example.org",), "CSMS.example.org.:443", "127.0.0.1", True),
    ("127.0.0.1", ("csms.example.org",), "example.org", "127.0.0.1", False),
    # bound beyond loopback: its name, its address, the address a request reached
    ("admin.lan", (), "admin.lan", "10.0.0.5", True),
    ("10.0.0.5", (), "10.0.0.5:9001", "10.0.0.5", True),
    ("0.0.0.0", (), "10.0.0.5:9001", "10.0.0.5", True),
    ("::", (), "[2001:db8::5]", "2001:db8::5", True),
    ("::", (), "10.0.0.5", "::ffff:10.0.0.5", True),
    ("0.0.0.0", (), "10.0.0.6", "10.0.0.5", False),
    ("0.0.0.0", (), "admin.lan", "10.0.0.5", False),
    # "*": any Host
    ("0.0.0.0", ("*",), "whatever.example", "10.0.0.5", True),
])
def test_served_hosts(bound: str, names: tuple[str, ...], header: str | None, local: str,
                      served: bool) -> None:
    assert AdminHosts(bound, names).serves(header, local) is served
