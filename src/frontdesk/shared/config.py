"""The ``shared:`` section of frontdesk.yaml: the Redis that replicas share state through."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class SharedConfig(BaseModel):
    """State shared by every replica (``frontdesk serve`` processes, their workers, ``frontdesk consume``).

    ``shared: redis://host:6379/0`` is short for ``shared: {url: redis://host:6379/0}`` (everything on).
    Without this section each process keeps its own dedup memory, LLM answer cache and drift window,
    and a reload reaches only the process that received it.
    """

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="redis://[:password@]host:port/db, rediss://… or unix:///path/redis.sock")
    prefix: str = Field("frontdesk:", description="prefix of every key (several deployments can share one Redis)")
    dedup: bool = Field(True, description="deduplicate across replicas (a decision is shared once it is committed)")
    llm_cache: bool = Field(True, description="share the LLM tier's answer cache (same TTL as llm.cache_ttl_s)")
    reload: bool = Field(True, description="a reload on any replica (POST /v1/admin/reload, `frontdesk reload`) "
                         "reaches every replica through a version key they watch")
    drift: bool = Field(True, description="one drift window over every replica's decisions (a shared stream)")
    lease_s: float = Field(30.0, gt=0, description="a message being decided is leased this long: a copy on another "
                           "replica waits for its decision (up to wait_s); the lease of a crashed replica expires")
    wait_s: float = Field(10.0, ge=0, description="how long a copy waits for another replica's decision before it "
                          "is decided afresh")
    watch_interval_s: float = Field(1.0, gt=0, description="how often replicas look at the version key")
    drift_maxlen: int = Field(100_000, ge=100, description="observations kept in the shared drift stream (≥ the window)")
    timeout_s: float = Field(2.0, gt=0, description="Redis socket timeout; on errors replicas carry on alone (logged)")

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, data: Any) -> Any:
        return {"url": data} if isinstance(data, str) else data

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"must be a Redis URL (redis://host:6379/0, rediss://…, unix:///path.sock), got {value!r}")
        return value
