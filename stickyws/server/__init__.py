"""The reference sticky WebSocket server (``stickyws serve``).

Modules, pure core first:

* :mod:`~stickyws.server.auth`: JWT verification, resume tokens, token/origin extraction; the token check
  itself is :mod:`~stickyws.server.jwt_hs256` (HS256 with the standard library).
* :mod:`~stickyws.server.session`: the connection's mirror of its session (the record and its rules are
  :mod:`stickyws.registry.records`).
* :mod:`~stickyws.server.drain`: the drain planner (jittered schedule at the pace, deadline).
* :mod:`~stickyws.server.send_on`: which handshakes are sent on to another revision (``avoid``).
* :mod:`~stickyws.server.delivery`: in-order, exactly-once cursors per connection (seq, topic offsets).
* :mod:`~stickyws.server.handler`: the application handler interface (plug your own here).
* :mod:`~stickyws.server.core_types`: what the adapter and the core exchange (requests, admissions,
  rejections, transports, connections).
* :mod:`~stickyws.server.outbound`: writes, slow consumers, session messages in seq order, gap fill.
* :mod:`~stickyws.server.topics`: subscribers per topic, the fan-out of publications, recovery.
* :mod:`~stickyws.server.upkeep`: the heartbeat, reconciliation after an outage, re-reading what was missed.
* :mod:`~stickyws.server.drain_run`: the drain as it runs (the schedule, reconnect instructions, deadline).
* :mod:`~stickyws.server.admission`: handshake decisions, the welcome and replay, a connection's end.
* :mod:`~stickyws.server.inbound`: client frames, the handler, the commit (the hot path).
* :mod:`~stickyws.server.core`: the server core: the parts wired, lifecycle, the pub/sub listener.
* :mod:`~stickyws.server.metrics`: EMF lines and the audit log.
* :mod:`~stickyws.server.identity`: the server id (ECS task id) and revision (task definition).
* :mod:`~stickyws.server.triggers`: drain triggers (task metadata, DescribeTargetHealth).
* :mod:`~stickyws.server.prestop`: the Kubernetes preStop drain (``stickyws server drain-self`` and its
  loopback-only endpoint).
* :mod:`~stickyws.server.protection`: task scale-in protection, the policy (who protects, renewal, release);
  :mod:`~stickyws.server.task_protection`, its calls to the ECS agent endpoint.
* :mod:`~stickyws.server.ws_adapter`: the WebSocket adapter's listener, and
  :mod:`~stickyws.server.ws_connection`, its asyncio protocol per connection (the only modules that touch
  client sockets), on :mod:`~stickyws.server.http_head` (request heads), :mod:`~stickyws.server.preflight`
  (CORS and pre-flight answers) and :mod:`~stickyws.server.ws_frames` (RFC 6455 frames, permessage-deflate).
* :mod:`~stickyws.server.publish_endpoint`: the publish endpoint's own port (aiohttp).
* :mod:`~stickyws.server.app`: assembly from the environment; :mod:`~stickyws.server.cli`: commands.

The registry the core stands on (routes, sessions, topic logs, liveness, the bus; in memory or on Redis)
is :mod:`stickyws.registry`, shared with the publisher (:mod:`stickyws.publish`).
"""
