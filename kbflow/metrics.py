"""kbflow's metrics and the worker's Temporal runtime (Prometheus endpoint, core logs).

A worker with ``KBFLOW_METRICS_PORT`` set serves ``/metrics`` on that port: the SDK
runtime's own series (``temporal_…``) plus kbflow's (``SERIES``, ``kbflow_…``), made with
the SDK's metric meter (``workflow.metric_meter()`` in workflow code: nothing is counted
while a history replays; ``activity.metric_meter()`` in activities). Counters end in
``_total`` on the endpoint (``counters_total_suffix``) and durations are in seconds.

No label holds personal data or a case ref: labels are event names, party codes, step
numbers, refusal codes (``kbflow.case.RefusalCode``), erasure reasons and exception class
names only, each from a short fixed list; the SDK's meters add ``namespace``,
``task_queue``, ``service_name`` and ``workflow_type`` or ``activity_type``.

``runtime`` makes the one ``temporalio.runtime.Runtime`` the worker's client (and so the
worker) runs on; it also forwards the SDK core's log lines into Python logging
(``kbflow.logs.core_logging``), so they reach the JSON log instead of stdout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from kbflow.logs import core_logging


@dataclass(frozen=True)
class Series:
    """One kbflow counter: its name as the SDK meter takes it (the endpoint adds
    ``_total``), what it counts, and its label names."""

    name: str
    description: str
    labels: tuple[str, ...]

    @property
    def exposed_name(self) -> str:
        """The name on the Prometheus endpoint."""
        return f"{self.name}_total"

    def add(self, meter: MetricMeter, labels: Mapping[str, str], value: int = 1) -> None:
        """Count ``value`` on ``meter`` with exactly this series' labels.

        Raises:
            ValueError: ``labels`` are not exactly this series' label names.
        """
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name}: labels {sorted(labels)}, expected "
                             f"{sorted(self.labels)}")
        meter.create_counter(self.name, self.description).add(value, dict(labels))


EVENTS_ACCEPTED = Series(
    "kbflow_events_accepted", "Agency events accepted (a repeat of a key: duplicate=true)",
    ("event", "sender", "duplicate"))
EVENTS_REFUSED = Series(
    "kbflow_events_refused", "Agency events refused, by refusal code",
    ("event", "sender", "code"))
PACKETS_DELIVERED = Series(
    "kbflow_packets_delivered", "Packets put in a recipient's outbox (a retry that found "
    "the packet there already is not counted)", ("step", "recipient"))
REMINDERS = Series(
    "kbflow_reminders", "Reminders sent to a party past its reply deadline",
    ("party", "event"))
ESCALATIONS = Series(
    "kbflow_escalations", "Awaited replies still missing a grace period after their "
    "deadline", ("party", "event"))
ERASURES = Series("kbflow_erasures", "Cases crypto-shredded", ("reason",))
DELIVERY_FAILURES = Series(
    "kbflow_delivery_failures", "Activity attempts (deliveries, reminders, erasures) "
    "that raised, by exception type (the SDK's activity_type label says which)",
    ("error",))

SERIES: tuple[Series, ...] = (EVENTS_ACCEPTED, EVENTS_REFUSED, PACKETS_DELIVERED, REMINDERS,
                              ESCALATIONS, ERASURES, DELIVERY_FAILURES)

#: The label value for an event name or sender that is not one of kbflow's (a name a
#: client made up could be anything, a person's name too).
UNKNOWN = "unknown"


def runtime(metrics_port: int | None, host: str = "0.0.0.0") -> Runtime:
    """A Temporal runtime that forwards the SDK core's logs to Python logging and, when
    ``metrics_port`` is set, serves Prometheus metrics on ``host:metrics_port``.

    Raises:
        RuntimeError: the port cannot be bound (in use, or not allowed).
    """
    metrics = None if metrics_port is None else PrometheusConfig(
        bind_address=f"{host}:{metrics_port}", counters_total_suffix=True,
        durations_as_seconds=True)
    return Runtime(telemetry=TelemetryConfig(logging=core_logging(), metrics=metrics))
