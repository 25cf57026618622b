"""Where a Kafka payload becomes a validated message, or a dead letter.

``ModelSchema`` validates every value with its pydantic model as Faust decodes it, so
agents receive typed objects. ``DeadLetteringTopic`` turns a payload that fails into a
:class:`DeadLetter` on the DLQ topic and lets the stream go on with the next message.
"""
from __future__ import annotations

import base64
import json
import logging
from typing import Any, Callable, Optional, Type

import faust
from faust.exceptions import KeyDecodeError, ValueDecodeError
from pydantic import BaseModel, ValidationError

from streamapp import metrics
from streamapp.models import DeadLetter

log = logging.getLogger(__name__)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, with the field path; never the input values (they may be huge)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<message>'}: {err['msg']}" for err in exc.errors()
    )


def decode(model: Type[BaseModel], payload: Optional[bytes]) -> BaseModel:
    """Decode and validate one payload, raising ValueDecodeError with a readable reason."""
    if payload is None:
        raise ValueDecodeError("empty payload (tombstone)")
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        kinds = {err["type"] for err in exc.errors()}
        if kinds & {"json_invalid", "json_type"}:
            raise ValueDecodeError(f"not valid JSON: {describe_validation_error(exc)}") from exc
        raise ValueDecodeError(f"{model.__name__} validation failed: {describe_validation_error(exc)}") from exc


def dead_letter(
    *, topic: str, partition: Optional[int], offset: Optional[int], key: Optional[bytes],
    value: Optional[bytes], exc: BaseException, reason: str, worker_id: str, attempts: int = 0,
) -> DeadLetter:
    cause = exc.__cause__ or exc
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        value_b64=base64.b64encode(value or b"").decode(),
        error_type=type(cause).__name__,
        error=str(exc),
        reason=reason,
        worker_id=worker_id,
        attempts=attempts,
    )


class ModelSchema(faust.Schema):
    """Raw bytes on the wire, pydantic models in the agent."""

    def __init__(self, model: Type[BaseModel]) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")
        self.model = model

    def loads_value(self, app: Any, message: Any, *, loads: Optional[Callable] = None, serializer: Any = None) -> Any:
        return decode(self.model, message.value)

    def dumps_value(self, app: Any, value: Any, *, serializer: Any = None, headers: Any) -> Any:
        if isinstance(value, BaseModel):
            value = value.model_dump_json(exclude_none=True).encode()
        elif isinstance(value, (dict, list)):
            value = json.dumps(value).encode()
        return value, headers

    def dumps_key(self, app: Any, key: Any, *, serializer: Any = None, headers: Any) -> Any:
        return (key.encode() if isinstance(key, str) else key), headers


class ByTopicSchema(ModelSchema):
    """One stream over several topics, each with its own message model."""

    def __init__(self, models: dict[str, Type[BaseModel]]) -> None:
        super().__init__(BaseModel)
        self.models = models

    def loads_value(self, app: Any, message: Any, *, loads: Optional[Callable] = None, serializer: Any = None) -> Any:
        return decode(self.models[message.topic], message.value)


class ModelCodec(faust.Codec):
    """Table values as pydantic models: JSON in the store and the changelog, typed in code."""

    def __init__(self, model: Type[BaseModel]) -> None:
        super().__init__()
        self.model = model

    def _dumps(self, obj: BaseModel) -> bytes:
        return obj.model_dump_json(exclude_none=True).encode()

    def _loads(self, s: bytes) -> BaseModel:
        return self.model.model_validate_json(s)


def with_model_values(table: Any, model: Type[BaseModel]) -> Any:
    """Store a table's values as ``model``. Faust 0.15 derives a table's serializers from
    key_type/value_type, which cannot name a pydantic model; the store and the changelog
    sends read ``value_serializer`` lazily, so setting it right after creation is enough."""
    table.value_serializer = ModelCodec(model)
    return table


class DeadLetteringTopic(faust.Topic):
    """A topic whose undecodable messages go to the DLQ instead of crashing the agent."""

    def __init__(self, *args: Any, dlq: Optional[faust.TopicT] = None, worker_id: str = "unknown", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dlq = dlq
        self.worker_id = worker_id

    def get_topic_name(self) -> str:
        if len(self.topics) > 1:
            # Faust's `agents` listing treats NotImplementedError as "no single name".
            raise NotImplementedError("a stream over several topics has no single name")
        return super().get_topic_name()

    def _clone_args(self) -> dict:
        # Agents work on clones of their topic; the DLQ must travel with them.
        return {**super()._clone_args(), "dlq": self.dlq, "worker_id": self.worker_id}

    async def on_key_decode_error(self, exc: Exception, message: Any) -> None:
        await self._send_dead_letter(exc, message, "key_decode_error")

    async def on_value_decode_error(self, exc: Exception, message: Any) -> None:
        await self._send_dead_letter(exc, message, "invalid_message")

    async def _send_dead_letter(self, exc: Exception, message: Any, reason: str) -> None:
        letter = dead_letter(
            topic=message.topic, partition=message.partition, offset=message.offset,
            key=message.key, value=message.value, exc=exc, reason=reason, worker_id=self.worker_id,
        )
        log.warning("dead-lettering %s[%s]@%s: %s", message.topic, message.partition, message.offset, letter.error)
        metrics.DLQ_MESSAGES.labels(reason=reason, source=message.topic).inc()
        if self.dlq is None:
            raise RuntimeError(f"{message.topic} has no DLQ topic configured; refusing to drop the message")
        await self.dlq.send(key=message.key, value=letter)


__all__ = ["ModelSchema", "ByTopicSchema", "ModelCodec", "with_model_values", "DeadLetteringTopic", "decode", "dead_letter", "KeyDecodeError", "ValueDecodeError"]
