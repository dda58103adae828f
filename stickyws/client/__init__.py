"""The reference ``stickyws.v1`` client: pure reconnect core plus an aiohttp adapter.

* :mod:`~stickyws.client.backoff`: full-jitter exponential backoff floored by the server's hint
* :mod:`~stickyws.client.cookies`: one cookie jar per endpoint, values opaque (``AWSALB``...)
* :mod:`~stickyws.client.outbox`: ids, acknowledgements, resend after resume
* :mod:`~stickyws.client.policy`: reconnect or stop, for every way a connection ends
* :mod:`~stickyws.client.events`: the events and counters a client reports
* :mod:`~stickyws.client.handshake`: the handshake URL, the 101 answer's headers, the reasons to stop
* :mod:`~stickyws.client.connection`: :class:`StickyClient` (needs the ``server`` extra: aiohttp)
"""

from stickyws.client.backoff import Backoff, parse_retry_after
from stickyws.client.cookies import CookieJar, endpoint_of
from stickyws.client.outbox import Outbox
from stickyws.client.policy import Decision

__all__ = ["Backoff", "CookieJar", "Decision", "Outbox", "endpoint_of", "parse_retry_after"]
