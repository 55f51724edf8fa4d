"""The operator console: server-rendered pages (Jinja2, htmx, uPlot) on the admin listener.

- :mod:`csms.admin.console.app`: the routes, logins, CSRF, live updates, actions;
- :mod:`csms.admin.console.pages`: what each page shows, read a page at a time;
- ``templates/`` the pages, ``static/`` the console's script and styles; ``static/vendor/``
  htmx, its server-sent-events extension and uPlot, copied there by ``make install`` from
  ``web/node_modules`` (pinned in ``web/package-lock.json``).
"""

from __future__ import annotations

from csms.admin.console.app import CONSOLE_COMMANDS, COOKIE, Console

__all__ = ["CONSOLE_COMMANDS", "COOKIE", "Console"]
