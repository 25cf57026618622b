"""`trafficrisk keys [list|enable NAME|disable NAME]`: the key pool across all workers,
from the shared state topic, by key name only."""
from __future__ import annotations

import time
from typing import Optional

import click
from faust.cli import argument

from llm.keyconfig import load_key_config
from streamapp.app import app, settings
from tables.keypool import operator_record, read_state, write_record


@app.command(
    argument("action", type=click.Choice(["list", "enable", "disable"]), default="list", required=False),
    argument("name", required=False),
)
async def keys(self, action: str, name: Optional[str]) -> None:
    """Show the key pool, or enable / disable a key by name on every worker."""
    config = load_key_config(settings.llm.keys_file)
    names = [k.name for k in config.keys]
    if action != "list":
        if name not in names:
            raise click.UsageError(f"unknown key name {name!r}; configured: {', '.join(names) or 'none'}")
        await write_record(settings, operator_record(name, disable=action == "disable", reason="disabled by operator"))
        self.say(f"key {name} {action}d on every worker")
        return
    if not names:
        self.say(f"no usable key in {settings.llm.keys_file}: the heuristic assessor runs")
        return
    state = await read_state(settings)
    now = time.time()
    live = state.live_workers(now, settings.llm.heartbeat_interval_s)
    self.say(f"strategy {config.strategy}; model {settings.llm.model} at {settings.llm.base_url}; "
             f"live workers: {', '.join(live) or 'none'}")
    header = f"{'NAME':<28} {'ACCOUNT':<16} {'STATE':<9} {'COOL_S':>6} {'CALLS':>7} {'OK':>7} {'429':>5}  REASON"
    self.say(header)
    for spec in config.keys:
        record = state.records.get(spec.name)
        usage = [beat["usage"].get(spec.name, {}) for beat in state.heartbeats.values()]
        calls, ok, limited = (sum(u.get(f, 0) for u in usage) for f in ("calls", "ok", "rate_limited"))
        if record is not None and record.disabled:
            status, reason, cool = "DISABLED", record.disabled_reason, 0.0
        elif record is not None and record.cooling_until > now:
            status, reason, cool = "COOLING", record.cool_reason, record.cooling_until - now
        else:
            status, reason, cool = "AVAILABLE", "", 0.0
        self.say(f"{spec.name:<28} {spec.account or '-':<16} {status:<9} {cool:>6.1f} {calls:>7} {ok:>7} "
                 f"{limited:>5}  {reason}")
