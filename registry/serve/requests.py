"""The prediction API's request and response shapes, and the checks a request passes before any
model runs (refused as :class:`ApiError`, with a status, a code and a hint)."""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ..data import Example
from .config import ServeConfig
from .pool import ModelPool, Served

EXAMPLE_HINT = (
    'POST /v1/predict with JSON {"task": "sentiment", "text": "a fine film"} '
    '(or "ref": "name@version"; "text" may be a list; pair tasks also take "text_b")'
)


class ApiError(Exception):
    """A request the server refuses, with the status, a code and a hint."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint


# ---------------------------------------------------------------------- request / response
class PredictRequest(BaseModel):
    """One text or a batch; a task (its served alias) or a REF."""

    task: str | None = Field(None, description="Task name: answered by TASK:production.")
    ref: str | None = Field(None, description="Any REF instead: name@version, name, id, T:A.")
    text: str | list[str] = Field(..., description="One text, or a list of texts.")
    text_b: str | list[str] | None = Field(
        None, description="The second text of each pair (pair tasks only), same shape as text."
    )

    model_config = {
        "json_schema_extra": {"examples": [{"task": "sentiment", "text": "a fine, warm film"}]}
    }


class ModelInfo(BaseModel):
    """The version that answered."""

    ref: str
    id: str
    kind: str
    task: str
    sha256: str


class Prediction(BaseModel):
    """The label with the highest score, and every label's probability."""

    label: str
    scores: dict[str, float]


class PredictResponse(BaseModel):
    """Predictions in input order, all from one model version."""

    model: ModelInfo
    predictions: list[Prediction]


# ---------------------------------------------------------------------- request checks
def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _examples(body: PredictRequest, config: ServeConfig) -> list[Example]:
    if (body.task is None) == (body.ref is None):
        raise ApiError(
            422,
            "invalid_request",
            "Give exactly one of 'task' and 'ref'.",
            EXAMPLE_HINT,
        )
    texts = _as_list(body.text)
    if not texts:
        raise ApiError(422, "empty_batch", "'text' is an empty list.", EXAMPLE_HINT)
    if len(texts) > config.max_request_texts:
        raise ApiError(
            413,
            "batch_too_large",
            f"{len(texts)} texts in one request; this server takes at most "
            f"{config.max_request_texts}.",
            f"Split the batch into requests of at most {config.max_request_texts} texts "
            "(or start the server with a larger --max-request-texts).",
        )
    seconds: list[str | None]
    if body.text_b is None:
        seconds = [None] * len(texts)
    else:
        if isinstance(body.text_b, str) != isinstance(body.text, str):
            raise ApiError(
                422,
                "pair_shape",
                "'text' and 'text_b' must both be strings or both be lists.",
                'Send {"text": "premise", "text_b": "hypothesis"} or two lists of equal length.',
            )
        seconds = list(_as_list(body.text_b))
        if len(seconds) != len(texts):
            raise ApiError(
                422,
                "pair_shape",
                f"'text' has {len(texts)} items but 'text_b' has {len(seconds)}.",
                "Give one text_b for each text.",
            )
    for i, (a, b) in enumerate(zip(texts, seconds, strict=True)):
        for name, value in (("text", a), ("text_b", b)):
            if value is None:
                continue
            where = f"{name}[{i}]" if isinstance(body.text, list) else name
            if not value.strip():
                raise ApiError(
                    422, "empty_text", f"{where} is empty.", "Give some text to classify."
                )
            if len(value) > config.max_text_chars:
                raise ApiError(
                    413,
                    "text_too_long",
                    f"{where} has {len(value)} characters; the limit is {config.max_text_chars}.",
                    "Shorten the text (it is cut to --max-length tokens anyway).",
                )
    return [Example(a, b, None) for a, b in zip(texts, seconds, strict=True)]


async def _served_for(body: PredictRequest, pool: ModelPool) -> Served:
    if body.task is not None:
        return pool.for_task(body.task)
    assert body.ref is not None
    cached = _cached_ref(pool, body.ref)
    if cached is not None:
        return cached
    served: Served = await run_in_threadpool(pool.resolve, body.ref)
    return served


def _cached_ref(pool: ModelPool, ref: str) -> Served | None:
    """Answer ``name@version`` and ids from what is loaded, without a database read."""
    for served in pool.loaded():
        if ref in (served.entity.ref, served.entity.uid):
            return served
    return None


def _check_pair(served: Served, examples: list[Example]) -> None:
    pair = served.task.kind == "pair"
    given = examples[0].text_b is not None
    if pair != given:
        want = "text pairs: give 'text_b' too" if pair else "single texts: leave out 'text_b'"
        raise ApiError(
            422,
            "pair_shape",
            f"{served.entity.ref} is for task {served.task.name!r}, which takes {want}.",
            EXAMPLE_HINT,
        )
