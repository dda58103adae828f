"""stickyws.testing's readiness helpers on templates: the auditor's verdict as a test assertion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stickyws.audit.checks import Status, catalog
from stickyws.audit.report import render_table
from stickyws.testing import NotWebSocketReady, assert_websocket_ready, audit_template
from tests.audit.edits import MUTATIONS
from tests.audit.handmade import make_template

HTTP2_ON = next(m for m in MUTATIONS if m.name == "http2-on")


class TemplateLike:
    """What ``aws_cdk.assertions.Template`` offers the helpers: ``to_json()``."""

    def __init__(self, template: dict[str, Any]) -> None:
        self._template = template

    def to_json(self) -> dict[str, Any]:
        """The template as a dict."""
        return self._template


def test_a_ready_template_passes_as_a_dict_a_file_and_a_template_object(tmp_path: Path) -> None:
    """A template from the default settings passes every check, however it is handed over."""
    template = make_template()
    path = tmp_path / "t.template.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    for target in (template, path, str(path), TemplateLike(template)):
        result = assert_websocket_ready(target)
        assert [r.status for r in result.results] == [Status.PASS] * len(catalog()), target
    assert audit_template(path).source == f"template {path}"


def test_a_broken_template_fails_with_the_rule_and_the_audit_table() -> None:
    """HTTP/2 on fails the assertion; the message names the failed rules and is followed by the audit table."""
    with pytest.raises(NotWebSocketReady) as caught:
        assert_websocket_ready(HTTP2_ON.edit(make_template()))
    failed = caught.value.audit.failed()
    assert set(failed) == HTTP2_ON.failing
    assert str(caught.value) == (
        f"template is not WebSocket-ready: {', '.join(failed)} failed\n" + render_table(caught.value.audit)
    )
    assert isinstance(caught.value, AssertionError)


def test_warnings_pass_unless_strict() -> None:
    """An HTTP-only template warns (no TLS): it passes by default and fails with strict=True."""
    template = make_template(https=False)
    warned = [r.rule for r in assert_websocket_ready(template).results if r.status is Status.WARN]
    assert warned
    with pytest.raises(NotWebSocketReady) as caught:
        assert_websocket_ready(template, strict=True)
    assert str(caught.value).startswith(f"template is not WebSocket-ready: {', '.join(warned)} failed or warned\n")


def test_something_that_is_not_a_template_is_refused() -> None:
    """A value that is neither a dict, a path nor a Template object raises TypeError naming its type."""
    with pytest.raises(TypeError, match="got int"):
        assert_websocket_ready(42)
