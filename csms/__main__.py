"""``python -m csms`` is the ``csms`` command."""

from __future__ import annotations

from csms.cli import main

main()
