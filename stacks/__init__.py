"""The reference stack, composed from ``constructs_lib``."""

from stacks.sticky_websocket_stack import HostedZoneRef, Outputs, StickyWebSocketStack

__all__ = ["HostedZoneRef", "Outputs", "StickyWebSocketStack"]
