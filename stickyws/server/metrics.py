"""CloudWatch Embedded Metric Format lines and the JSON audit log, both on stdout by default.

EMF: one JSON object per line with an ``_aws`` block; CloudWatch Logs turns it into metrics in
namespace ``metrics_namespace``. Counters are emitted as deltas since the last flush (the server
flushes with every heartbeat, never per message). Dimension ``ServiceName`` (from
``STICKYWS_SERVICE_NAME``) is added when that variable is set, so the autoscaling policy can
target ``ActiveConnections`` of one service; ``HandshakesRejected`` is also split by ``Reason``.

Audit log: one JSON object per routing decision, ``{"log":"audit","event","decision","reason",
"user","server","remote",...}``. It never carries a token.

Where lines go: audit lines to ``out`` (default stdout); EMF lines to ``emf_out`` (default: ``out``),
or nowhere with ``emit_emf=False`` (``stickyws serve --dev`` without ``--metrics-file``: a local
console has no CloudWatch agent, and a flush every heartbeat would bury the server's own messages).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TextIO

COUNTERS = (
    "HandshakesAccepted",
    "SessionsResumed",
    "MessagesIn",
    "MessagesOut",
    # Push: user messages handed to their socket, topic publications written to subscribers, publications
    # accepted by the publish endpoint, slow consumers closed with 1013, topic positions that could not be
    # recovered (retention or epoch change), and session messages reported lost to a resuming client.
    "PushesDelivered",
    "Deliveries",
    "Publications",
    "SlowConsumerCloses",
    "RecoveryFailures",
    "ReplayGaps",
    # Handshakes sent on to another revision (a client moved by a drain avoids this server's revision).
    "SendsOn",
)
#: Publish-to-send lag samples kept per flush (EMF carries them as one array; CloudWatch computes percentiles).
LAG_SAMPLES = 100
#: One encoder each, made once (``json.dumps`` with options builds a new encoder per call).
_COMPACT_ENCODER = json.JSONEncoder(separators=(",", ":"))
_AUDIT_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def emf_line(
    namespace: str,
    values: Mapping[str, float | list[float]],
    *,
    dimensions: Mapping[str, str],
    units: Mapping[str, str],
    timestamp_ms: int,
) -> str:
    """One EMF document with ``values`` under ``dimensions`` (an empty mapping: no dimensions)."""
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": units.get(name, "Count")} for name in values],
                }
            ],
        },
        **dimensions,
        **values,
    }
    return _COMPACT_ENCODER.encode(doc)


class Metrics:
    """Counters between flushes, and the writer of EMF and audit lines."""

    def __init__(
        self,
        namespace: str,
        *,
        service_name: str | None = None,
        out: TextIO | None = None,
        emf_out: TextIO | None = None,
        emit_emf: bool = True,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.namespace = namespace
        self.service_name = service_name
        self.out = out
        #: Stream of the EMF lines; ``None``: the same as :attr:`out`.
        self.emf_out = emf_out
        #: False: counters are still kept and reset at every flush, but no EMF line is written.
        self.emit_emf = emit_emf
        self._clock_ms = clock_ms
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.lags: list[float] = []
        self._lags_seen = 0
        self._rng = random.Random()

    def _write(self, line: str, out: TextIO | None = None) -> None:
        out = out or self.out or sys.stdout
        out.write(line + "\n")
        out.flush()

    def _write_emf(self, line: str) -> None:
        if self.emit_emf:
            self._write(line, self.emf_out)

    def _dims(self, **extra: str) -> dict[str, str]:
        dims = {"ServiceName": self.service_name} if self.service_name else {}
        return {**dims, **extra}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (one of :data:`COUNTERS`)."""
        self.counters[name] += n

    def lag(self, ms: float) -> None:
        """Record one publish-to-send lag (milliseconds from the registry assigning it to the socket write)."""
        self._lags_seen += 1
        if len(self.lags) < LAG_SAMPLES:
            self.lags.append(ms)
        else:  # reservoir sampling: every lag of the interval has the same chance to be reported
            slot = self._rng.randrange(self._lags_seen)
            if slot < LAG_SAMPLES:
                self.lags[slot] = ms

    def reject(self, reason: str) -> None:
        """Count one rejected handshake with ``reason``."""
        self.rejected[reason] += 1

    def flush(self, active_connections: int) -> None:
        """Write the gauge and every counter's delta since the last flush, then reset the counters."""
        values: dict[str, float] = {"ActiveConnections": active_connections}
        values.update({name: self.counters[name] for name in COUNTERS})
        self._write_emf(
            emf_line(self.namespace, values, dimensions=self._dims(), units={}, timestamp_ms=self._clock_ms())
        )
        for reason, n in sorted(self.rejected.items()):
            self._write_emf(
                emf_line(
                    self.namespace,
                    {"HandshakesRejected": n},
                    dimensions=self._dims(Reason=reason),
                    units={},
                    timestamp_ms=self._clock_ms(),
                )
            )
        if self.lags:
            self._write_emf(
                emf_line(
                    self.namespace,
                    {"PublishLagMs": [round(v, 1) for v in self.lags]},
                    dimensions=self._dims(),
                    units={"PublishLagMs": "Milliseconds"},
                    timestamp_ms=self._clock_ms(),
                )
            )
        self.counters.clear()
        self.rejected.clear()
        self.lags.clear()
        self._lags_seen = 0

    def drain_seconds(self, seconds: float) -> None:
        """Write how long a drain took."""
        self._write_emf(
            emf_line(
                self.namespace,
                {"DrainSeconds": round(seconds, 3)},
                dimensions=self._dims(),
                units={"DrainSeconds": "Seconds"},
                timestamp_ms=self._clock_ms(),
            )
        )

    def audit(self, event: str, **fields: Any) -> None:
        """One audit line (``event`` plus fields; callers never pass tokens)."""
        body = {"log": "audit", "ts": self._clock_ms(), "event": event, **fields}
        self._write(_AUDIT_ENCODER.encode(body))
