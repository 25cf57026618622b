"""The keys file (``config/api_keys.yaml``): the seed's format plus quota groups.

::

    strategy: round_robin          # round_robin | least_loaded | priority
    max_retry_per_key: 3           # consecutive failures before a key cools
    default_cooldown: 5.0          # seconds, when a 429 carries no Retry-After
    accounts:                      # quota groups: every key of an account shares these
      main: {rps: 50, rpm: 2400, tpm: 1000000}
    keys:
      - api_key: ${DASHSCOPE_KEY_001:-}
        name: production-key-001
        account: main
        qps_limit: 10
        rpm_limit: 600
        priority: 1

A key whose ``api_key`` is empty (its variable unset) is skipped with a log line
naming it; a file with no usable key means the heuristic assessor runs instead.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from streamapp.settings import ConfigError, read_yaml, validation_message

log = logging.getLogger(__name__)

Strategy = Literal["round_robin", "least_loaded", "priority"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountLimits(_Strict):
    rps: Optional[float] = Field(default=None, gt=0)
    rpm: Optional[float] = Field(default=None, gt=0)
    tpm: Optional[float] = Field(default=None, gt=0)


class KeySpec(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    # SecretStr: printing, logging or dumping the spec shows '**********'.
    api_key: SecretStr
    account: Optional[str] = None
    qps_limit: Optional[float] = Field(default=None, gt=0)
    rpm_limit: Optional[float] = Field(default=None, gt=0)
    tpm_limit: Optional[float] = Field(default=None, gt=0)
    priority: int = Field(default=1, ge=0)


class KeyPoolConfig(_Strict):
    strategy: Strategy = "round_robin"
    max_retry_per_key: int = Field(default=3, ge=1)
    default_cooldown: float = Field(default=5.0, ge=0)
    accounts: dict[str, AccountLimits] = {}
    keys: list[KeySpec] = []

    @model_validator(mode="after")
    def _consistent(self) -> "KeyPoolConfig":
        names = [k.name for k in self.keys]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate key names {duplicates}")
        unknown = sorted({k.account for k in self.keys if k.account and k.account not in self.accounts})
        if unknown:
            raise ValueError(f"keys refer to accounts not listed under 'accounts': {unknown}")
        return self


def load_key_config(path: Path) -> KeyPoolConfig:
    """Read the keys file; a missing file is an empty pool (the heuristic runs)."""
    if not path.exists():
        return KeyPoolConfig()
    data = read_yaml(path)
    raw_keys = data.get("keys") or []
    usable = []
    for entry in raw_keys:
        if isinstance(entry, dict) and not entry.get("api_key"):
            log.warning("key %s has no api_key (variable unset?); leaving it out of the pool",
                        entry.get("name", "<unnamed>"))
            continue
        usable.append(entry)
    data["keys"] = usable
    try:
        return KeyPoolConfig.model_validate(data)
    except ValidationError as exc:
        # Messages name fields and problems only, never the values (a key could be one).
        raise ConfigError(validation_message(exc, str(path), set())) from None
