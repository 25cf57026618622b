"""Our own CLI commands, registered on the app beside Faust's."""
from __future__ import annotations

import json

import click
from faust.cli import argument

from streamapp.app import app, settings
from streamapp.topic_admin import describe_topics, ensure_topics


@app.command(argument("action", type=click.Choice(["create", "list"])))
async def topics(self, action: str) -> None:
    """Create missing topics (idempotent) or list ours with their configs."""
    if action == "create":
        report = await ensure_topics(settings)
        for line in report.lines():
            self.say(line)
        return
    for row in await describe_topics(settings):
        self.say(json.dumps(row, sort_keys=True))
