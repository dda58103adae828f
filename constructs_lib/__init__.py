"""Reusable AWS CDK constructs for sticky WebSocket services behind an Application Load Balancer.

Every construct takes the one :class:`stickyws.settings.Settings` object where settings matter
and checks it with :func:`apply_settings` for the parts it builds. Importing this package makes an
uncaught :class:`stickyws.settings.SettingsError` end the app with its message and exit status 1
(:mod:`constructs_lib.synth_errors`). The reference stack (``stacks/``) composes them; your
own stack can use any of them alone (see docs/iac.md, "Reuse in your own stack").
"""

from constructs_lib.drain_notifier import DrainNotifier
from constructs_lib.health_check import ContainerHealthCheck
from constructs_lib.image import server_image
from constructs_lib.load_balancer import StickyWebSocketLoadBalancer, load_balancer_attributes
from constructs_lib.migration_hook import MigrationHook
from constructs_lib.observability import WebSocketObservability
from constructs_lib.registry import ConnectionRegistry
from constructs_lib.scaling import ScalingSignal
from constructs_lib.service import CONTAINER_NAME, WebSocketFargateService
from constructs_lib.settings_check import SettingsMismatchError, apply_settings
from constructs_lib.synth_errors import install_settings_error_hook

install_settings_error_hook()

__all__ = [
    "CONTAINER_NAME",
    "ConnectionRegistry",
    "ContainerHealthCheck",
    "DrainNotifier",
    "MigrationHook",
    "ScalingSignal",
    "SettingsMismatchError",
    "StickyWebSocketLoadBalancer",
    "WebSocketFargateService",
    "WebSocketObservability",
    "apply_settings",
    "install_settings_error_hook",
    "load_balancer_attributes",
    "server_image",
]
