"""Settings of one serving process."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidInput

PRECISIONS = ("fp32", "bf16", "fp16")
TOKEN_ENV = "ADAPTER_REGISTRY_SERVE_TOKEN"


@dataclass
class ServeConfig:
    """How ``adapter-registry serve`` runs; every field is a CLI option."""

    host: str = "127.0.0.1"
    port: int = 8000
    alias: str = "production"
    #: seconds between two reads of the aliases: a promotion is noticed within this time
    poll_interval: float = 1.0
    #: most texts run in one forward pass (across requests)
    max_batch: int = 32
    #: how long the first request of a batch waits for company, in milliseconds
    max_wait_ms: float = 5.0
    #: most texts one request may send
    max_request_texts: int = 64
    #: most characters in one text
    max_text_chars: int = 10_000
    max_length: int = 256
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    token: str | None = None
    ui: bool = False
    #: load each task's alias at start-up (tests and benchmarks may defer it)
    preload: bool = True

    def check(self) -> ServeConfig:
        """Refuse impossible settings before anything is loaded; return self."""
        if self.precision not in PRECISIONS:
            raise InvalidInput(
                f"Unknown precision {self.precision!r}.",
                hint=f"Use one of {', '.join(PRECISIONS)}.",
            )
        for name in ("max_batch", "max_request_texts", "max_length", "max_text_chars"):
            if getattr(self, name) < 1:
                raise InvalidInput(
                    f"--{name.replace('_', '-')} must be at least 1.",
                    hint="See the defaults: adapter-registry serve --help",
                )
        if self.max_wait_ms < 0 or self.poll_interval <= 0:
            raise InvalidInput(
                "--max-wait-ms must be ≥ 0 and --poll-interval > 0.",
                hint="For example: --max-wait-ms 5 --poll-interval 1",
            )
        if self.token is not None and not self.token.strip():
            raise InvalidInput(
                "The bearer token is empty.",
                hint=f"Give --token SECRET (or set {TOKEN_ENV}), or leave both unset.",
            )
        return self

    def public(self) -> dict[str, Any]:
        """Return the settings without the token, for /health and logs."""
        data = asdict(self)
        data["token"] = "set" if self.token else None
        return data
