"""Prometheus metrics of one serving process (its own collector registry, not the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ENDPOINTS = ("/v1/predict", "/v1/models", "/v1/lineage", "/health", "/metrics", "/ui", "/docs")


class ServeMetrics:
    """Requests, latency, batch sizes, texts and model swaps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "adapter_registry_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "adapter_registry_request_seconds",
            "Time from request to response, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "adapter_registry_batch_size",
            "Texts per forward pass (after micro-batching).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.texts = Counter(
            "adapter_registry_texts",
            "Texts classified, by task and the version that answered.",
            ["task", "model"],
            registry=self.registry,
        )
        self.swaps = Counter(
            "adapter_registry_model_swaps",
            "Alias changes followed (result=ok) or refused because the load failed (failed).",
            ["task", "result"],
            registry=self.registry,
        )
        self.served = Gauge(
            "adapter_registry_served_models",
            "Tasks with a served alias target.",
            registry=self.registry,
        )
        self.loaded = Gauge(
            "adapter_registry_loaded_models",
            "Adapter versions and fusions loaded in this process.",
            registry=self.registry,
        )
        self.unloads = Gauge(
            "adapter_registry_unloaded_models",
            "Replaced alias targets unloaded since start (memory stays flat over promotions).",
            registry=self.registry,
        )

    @staticmethod
    def endpoint(path: str) -> str:
        """Return the bounded endpoint label of a request path."""
        for prefix in ENDPOINTS:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix
        return "other"
