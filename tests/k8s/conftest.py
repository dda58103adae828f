"""Rendered manifests of the four combinations: Ingress or Gateway API, the reference server or your own."""

from __future__ import annotations

from typing import Any

import pytest

from stickyws.k8s import WebSocketApp, render
from stickyws.settings import Settings

#: Your own server, told its port and drain timings.
OWN = {"server_mode": "own", "server_env": "port=PORT,drain_window_s=DRAIN_S,shutdown_timeout_s", "port": 3000}
COMBINATIONS = [
    pytest.param("ingress", {}, id="ingress-reference"),
    pytest.param("ingress", OWN, id="ingress-own"),
    pytest.param("gateway", {}, id="gateway-reference"),
    pytest.param("gateway", OWN, id="gateway-own"),
]


def documents(api: str, overrides: dict[str, Any] | None = None, **app: Any) -> dict[str, dict[str, Any]]:
    """``{kind: document}`` of one rendering."""
    settings = Settings().with_overrides({"k8s_api": api, **(overrides or {})})
    rendered = render(WebSocketApp(settings, image=app.pop("image", "registry.example/ws:1"), **app))
    return {d["kind"]: d for d in rendered.documents}
