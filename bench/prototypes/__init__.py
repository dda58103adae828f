"""Minimal servers that measure a WebSocket layer on its own (not part of stickyws)."""
