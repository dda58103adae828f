"""Which revision the next handshake avoids, pure: set by a drain's ``reconnect`` frame, given up after
:data:`stickyws.protocol.MAX_AVOID_HOPS` sends-on in a row.

A draining server with a revision adds ``"avoid": "<revision>"`` to its ``reconnect`` frame; the client
puts ``avoid=<revision>`` (:data:`stickyws.protocol.AVOID_QUERY`) in the query of its next handshake, so a
server of that same revision sends it on (reason ``send_on``) while another revision is live. Each
send-on in a row counts a hop; after ``MAX_AVOID_HOPS`` of them the client stops avoiding and takes
whichever server it lands on. A ``connected`` frame ends the avoiding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stickyws import protocol


@dataclass
class Avoid:
    """What the next handshake avoids (``revision``, "" for nothing) and the sends-on in a row (``hops``)."""

    revision: str = ""
    hops: int = 0

    def on_reconnect_frame(self, frame: Mapping[str, Any]) -> None:
        """A ``reconnect`` frame: avoid its ``avoid`` (none when absent); a send-on counts one more hop."""
        avoid = frame.get("avoid")
        if not isinstance(avoid, str) or not avoid or len(avoid) > protocol.MAX_AVOID_CHARS:
            self.revision, self.hops = "", 0
            return
        self.hops = self.hops + 1 if frame.get("reason") == protocol.RECONNECT_SEND_ON else 0
        self.revision = avoid if self.hops < protocol.MAX_AVOID_HOPS else ""

    def on_connected(self) -> None:
        """A server admitted the client: nothing to avoid any more."""
        self.revision, self.hops = "", 0

    def query(self) -> dict[str, str]:
        """The handshake query parameters: ``{"avoid": revision}`` or nothing."""
        return {protocol.AVOID_QUERY: self.revision} if self.revision else {}
