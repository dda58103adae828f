"""The root of stickyws's exceptions, and one base per package.

``except StickywsError`` catches every error stickyws raises on purpose; ``except AuditError`` (and
the other package bases) every error of one package. Each concrete error keeps the built-in base it
has always had (``ValueError``, ``RuntimeError``, ...), so an ``except ValueError`` around a settings
call keeps working. A leaf module (standard library only): every package may import it.

Hierarchy (the concrete errors live next to the code that raises them)::

    StickywsError
    ├── SettingsError (+ ValueError)            stickyws.settings: a setting that must not be deployed
    │   ├── UnknownSettingError
    │   └── SettingValueError
    ├── AuditError                              stickyws.audit: a source the auditor cannot read
    │   ├── ReadError                           stickyws.audit.from_aws
    │   ├── TemplateError                       stickyws.audit.from_template
    │   └── ManifestError                       stickyws.audit.k8s.manifests
    ├── ReferenceClientError                    stickyws.client
    │   └── ClientStopped (+ RuntimeError)      stickyws.client.connection
    ├── LocalTwinError                          stickyws.twin
    │   ├── TwinError (+ RuntimeError)          stickyws.twin.processes
    │   └── RuntimeApiError (+ RuntimeError)    stickyws.twin.runtime_api
    ├── StackTestingError                       stickyws.testing
    │   ├── UnresolvableError (+ ValueError)    stickyws.testing.moto_compat
    │   └── NotWebSocketReady (+ AssertionError) stickyws.testing.readiness
    ├── PublishError (+ ValueError)             stickyws.publish
    ├── CommandError                            stickyws.cli_errors: a command line the user can fix
    ├── ReferenceServerError                    stickyws.server
    │   ├── AuthError                           stickyws.server.auth
    │   ├── InvalidToken, TokenExpired          stickyws.server.jwt_hs256
    │   ├── BadRequest                          stickyws.server.http_head
    │   ├── FrameError, MessageTooBig           stickyws.server.ws_frames
    │   ├── HandlerError                        stickyws.server.handler
    │   ├── DrainSelfError                      stickyws.server.prestop
    │   └── StartupError                        stickyws.server.app
    ├── RegistryError                           stickyws.registry.errors
    │   ├── RegistryUnavailable, NotYetReplicated
    │   ├── SessionReplaced, LaneReplyError
    │   └── LaneUnavailable (+ ConnectionError)
    ├── ProtocolError (+ ValueError)            stickyws.protocol
    └── LocalProcessError (+ RuntimeError)      stickyws.localproc

Not derived from it: the errors of the Lambdas' modules (``stickyws.drain_notifier``,
``stickyws.registry_auth``, ``stickyws.migration_hook``), whose bundles carry only the modules they need.
"""

from __future__ import annotations


class StickywsError(Exception):
    """An error stickyws raises on purpose; its message says what went wrong and what to do."""


class AuditError(StickywsError):
    """The auditor (``stickyws audit``) could not read or judge its source."""


class ReferenceClientError(StickywsError):
    """The reference client (:mod:`stickyws.client`) cannot go on."""


class LocalTwinError(StickywsError):
    """The local twin of the load balancer (:mod:`stickyws.twin`) failed."""


class ReferenceServerError(StickywsError):
    """The reference server (:mod:`stickyws.server`) refused input or could not start."""


class RegistryError(StickywsError):
    """The connection registry (:mod:`stickyws.registry`) could not do what was asked."""


class StackTestingError(StickywsError):
    """Testing a stack offline (:mod:`stickyws.testing`) found a stack or template it cannot accept."""
