"""What the twin does for browsers: allow its own page origins and link the demo page.

Browsers always send ``Origin``; a server with an empty ``allowed_origins`` refuses them with
403. The twin serves pages (the demo) from its own listener, so it adds that listener's origins,
``http://127.0.0.1:PORT`` and ``http://localhost:PORT`` (two different origins to a browser), to
whatever ``allowed_origins`` the settings hold. ``*`` is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

#: Where every reference server serves the demo page (``stickyws/static/stickyws-demo.html``).
DEMO_PATH = "/stickyws-demo.html"


def page_origins(port: int) -> tuple[str, ...]:
    """The origins of pages served by a listener on loopback ``port``."""
    return (f"http://127.0.0.1:{port}", f"http://localhost:{port}")


def with_page_origins(allowed: Iterable[str], port: int) -> tuple[str, ...]:
    """``allowed`` plus the twin's page origins (unchanged when it holds ``*``), without duplicates."""
    current = tuple(allowed)
    if "*" in current:
        return current
    return current + tuple(o for o in page_origins(port) if o not in current)


def allow_page_origins(cluster: Any) -> None:
    """Before ``cluster.start()``: let pages served by the twin's own listener connect."""
    origins = with_page_origins(cluster.settings["allowed_origins"], cluster.frontend_port)
    cluster.settings = cluster.settings.with_overrides({"allowed_origins": origins})


def demo_url(http_url: str, tokens: dict[str, str]) -> str:
    """The demo page behind ``http_url`` with one client per ``user: token`` (in the fragment: never sent)."""
    pairs = ",".join(f"{user}:{token}" for user, token in tokens.items())
    return f"{http_url}{DEMO_PATH}#tokens={quote(pairs, safe=':,')}"
