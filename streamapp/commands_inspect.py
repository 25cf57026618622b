"""Inspection commands: `table NAME [KEY]`, `dlq list`, `dlq replay`.

They read Kafka directly (a table is its changelog folded by key), so they work from
any machine that reaches the cluster, with the workers running or not.
"""
from __future__ import annotations

import base64
import binascii
import json
import sys
from collections import Counter
from typing import Any, Optional

import click
from aiokafka import AIOKafkaProducer
from faust.cli import argument, option
from pydantic import ValidationError

from streamapp.app import app, settings
from streamapp.kafka_client import aiokafka_kwargs
from streamapp.kafka_inspect import fold_changelog, read_topic
from streamapp.models import DeadLetter


def _readable(data: bytes) -> Any:
    """JSON when it is JSON, text when it is text, base64 otherwise."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def _key_matches(stored: bytes, wanted: str) -> bool:
    # Tables store keys raw or as JSON strings, depending on their key type.
    return stored in (wanted.encode(), json.dumps(wanted).encode())


@app.command(
    argument("name"),
    argument("key", required=False),
)
async def table(self, name: str, key: Optional[str] = None) -> None:
    """Print a table's rows as JSON lines ({"key": ..., "value": ...}), or one row by KEY."""
    tables = {t.name: t for t in app.tables.values()}
    if name not in tables:
        raise click.UsageError(f"no table {name!r}; tables: {', '.join(sorted(tables))}")
    rows = fold_changelog(await read_topic(settings, tables[name].changelog_topic.get_topic_name()))
    found = 0
    for stored_key, value in sorted(rows.items()):
        if key is not None and not _key_matches(stored_key, key):
            continue
        found += 1
        self.say(json.dumps({"key": _readable(stored_key), "value": _readable(value)}, sort_keys=True))
    if key is not None and not found:
        print(f"trafficrisk: table {name} has no row {key!r}", file=sys.stderr)
        sys.exit(1)


async def _dead_letters(reasons: tuple[str, ...]) -> list[tuple[Any, DeadLetter]]:
    letters = []
    for record in await read_topic(settings, settings.topics.dlq.name):
        try:
            letter = DeadLetter.model_validate_json(record.value)
        except (ValidationError, TypeError) as exc:
            print(f"trafficrisk: skipping unreadable DLQ record {record.partition}@{record.offset}: {exc}", file=sys.stderr)
            continue
        if not reasons or letter.reason in reasons:
            letters.append((record, letter))
    return letters


@app.command(
    argument("action", type=click.Choice(["list", "replay"])),
    option("--reason", "reasons", multiple=True, help="Only envelopes with this reason (repeatable)."),
)
async def dlq(self, action: str, reasons: tuple[str, ...]) -> None:
    """List dead letters (JSON lines, payload size instead of payload), or re-publish
    their original bytes to the topics they came from."""
    letters = await _dead_letters(reasons)
    if action == "list":
        for record, letter in letters:
            row = letter.model_dump(mode="json", exclude={"value_b64"})
            row.update(dlq_partition=record.partition, dlq_offset=record.offset,
                       value_bytes=len(base64.b64decode(letter.value_b64)))
            self.say(json.dumps(row, sort_keys=True))
        self.say(f"{len(letters)} dead letter(s)")
        return
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings.kafka), acks="all", enable_idempotence=True)
    await producer.start()
    replayed: Counter = Counter()
    try:
        for record, letter in letters:
            try:
                key = base64.b64decode(letter.key_b64) if letter.key_b64 else None
                value = base64.b64decode(letter.value_b64)
            except binascii.Error as exc:
                print(f"trafficrisk: cannot replay {record.partition}@{record.offset}: {exc}", file=sys.stderr)
                continue
            await producer.send_and_wait(letter.source_topic, value, key=key)
            replayed[letter.source_topic] += 1
    finally:
        await producer.stop()
    for topic, count in sorted(replayed.items()):
        self.say(f"replayed {count} to {topic}")
    self.say(f"{sum(replayed.values())} dead letter(s) replayed")
