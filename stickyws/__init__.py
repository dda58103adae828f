"""stickyws: sticky WebSocket services behind an AWS Application Load Balancer.

This package is the pure-Python runtime side of the toolkit: the settings model that every
other part renders or reads, the reference server, client, local twin and auditor. It never
imports ``aws_cdk``; the CDK constructs live in ``constructs_lib`` and import from here.
"""

__version__ = "0.1.0"

from stickyws import compiled as _compiled

# Decide before any module of the hot path is imported: the compiled build only while its sources are unchanged.
_compiled.choose()
