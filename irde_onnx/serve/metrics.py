"""Prometheus metrics of one server process (its own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


OUTCOME_ALPHA = 0.05  # ~the last 20 rows of an expert weigh most in its outcome average


class ServerMetrics:
    """Requests, latency, decisions (and explored ones) per expert, swaps, errors, reloads."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "irde_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "irde_request_seconds",
            "time to the response headers, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "irde_decisions", "routing decisions by chosen expert", ["expert"], registry=r
        )
        self.explored = Counter(
            "irde_explored",
            "routing decisions that exploration (irde serve --explore) sent to another expert "
            "than the router's own pick, by the expert chosen",
            ["expert"],
            registry=r,
        )
        self.swaps = Counter(
            "irde_head_swaps",
            "router swaps: api (a change made here) or reload (the folder changed on disk)",
            ["cause"],
            registry=r,
        )
        self.errors = Counter(
            "irde_errors",
            "error responses by endpoint and error type",
            ["endpoint", "type"],
            registry=r,
        )
        self.experts = Gauge("irde_experts", "experts of the router in use", registry=r)
        self.reload_failures = Counter(
            "irde_reload_failures",
            "changed router folders that could not be loaded (each broken router.json once; "
            "the older router stays in use)",
            registry=r,
        )
        self.stale = Gauge(
            "irde_router_stale",
            "1 while the folder on disk cannot be loaded and an older router is served",
            registry=r,
        )

        self.feedback_rows = Counter(
            "irde_feedback_rows",
            "feedback rows accepted (journaled) by the expert they inform",
            ["expert"],
            registry=r,
        )
        self.feedback_outcome = Gauge(
            "irde_feedback_outcome_avg",
            f"moving average (exponential, weight {OUTCOME_ALPHA} per row) of the outcomes and "
            "scores fed back per expert",
            ["expert"],
            registry=r,
        )
        self._outcome: dict[str, float] = {}

    def observe_feedback(self, rows: list[dict]) -> None:
        """Count accepted feedback rows per expert and update the outcome averages."""
        for row in rows:
            if "scores" in row:
                targets = row["scores"]
            elif "outcome" in row:
                targets = {row["expert"]: row["outcome"]}
            else:  # a domain label: counted, no outcome
                self.feedback_rows.labels(row["expert"]).inc()
                continue
            for expert, value in targets.items():
                self.feedback_rows.labels(expert).inc()
                old = self._outcome.get(expert)
                new = float(value) if old is None else old + OUTCOME_ALPHA * (value - old)
                self._outcome[expert] = new
                self.feedback_outcome.labels(expert).set(new)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
