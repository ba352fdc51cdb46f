"""One settings object for every verimarket process, read from VERIMARKET_* variables.

Defaults are the embedded development setup (anvil, SQLite, kombu's filesystem transport);
production sets the URLs (docker-compose.yml shows which).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from market.paths import artifacts_dir, data_dir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERIMARKET_", extra="ignore")

    rpc_url: str = "http://127.0.0.1:8545"
    private_key: str | None = Field(default=None, repr=False)
    deployment_file: Path = Field(default_factory=lambda: data_dir() / "deployment.json")
    artifacts: Path = Field(default_factory=artifacts_dir)
    data: Path = Field(default_factory=data_dir)
    database_url: str | None = None
    broker_url: str | None = None
    #: Prefix of every Redis key the broker uses (isolates deployments and test runs).
    broker_prefix: str = ""
    node_database_url: str | None = None
    blob_dir: Path | None = None
    blob_base_url: str = "http://127.0.0.1:8000/blobs/"
    #: segments of pipelined jobs this node takes: "MODEL:0,1,2[@WEI];..." (docs/pipeline.md)
    pipeline_segments: str = ""
    inline_output_max: int = 1024
    batch_max: int = 32
    batch_wait_ms: float = 5.0
    device: str | None = None
    warm_models: str = ""
    torch_threads: int = 1
    #: seconds a claimed job may go unfinished before the node re-queues its task
    task_lease_s: float = 30.0
    #: where the node's poller finds new jobs: the chain's events, or the market index
    poller_source: Literal["events", "index"] = "events"
    #: seconds before an RPC request is given up (then retried by the caller's loop)
    rpc_timeout_s: float = 30.0
    #: seconds Redis keeps a delivered, unacknowledged task before delivering it again
    broker_visibility_s: float = 300.0
    #: Redis holding the token streams of generative jobs (docs/llm.md); unset: the broker's
    #: when that is Redis, else no streaming. Keys carry ``broker_prefix``.
    stream_url: str | None = None
    #: seconds a job's token stream is kept after its last event
    stream_ttl_s: int = 3600
    #: longest the API's stream route waits for a job's first event (seconds)
    stream_wait_s: float = 300.0
    # --- market API (`verimarket api`) ---
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: The domain (host[:port]) Sign-In with Ethereum messages must name; unset: the request's
    #: Host header.
    api_domain: str | None = None
    #: The chain id sign-ins must name; unset: the deployment file's, else anvil's 31337.
    api_chain_id: int | None = None
    #: HMAC key of API session tokens; unset: a random key per process (tokens die on restart).
    api_secret: str | None = Field(default=None, repr=False)
    api_session_ttl_s: int = 3600
    api_nonce_ttl_s: int = 300
    #: Largest request body outside the blob store (JSON endpoints).
    api_max_json_body: int = 64 * 1024
    #: Per-client token bucket: sustained requests per second and burst size.
    api_rate_per_s: float = 20.0
    api_rate_burst: int = 100
    #: How long GET /stats may serve a computed answer (seconds; 0: compute every time).
    api_stats_ttl_s: float = 5.0
    #: Largest blob the store and the API accept.
    blob_max_bytes: int = 16 << 20

    def warm(self) -> list[str]:
        return [m for m in self.warm_models.split(",") if m]

    def broker(self) -> str:
        return self.broker_url or "vmfs://"

    def streams(self) -> str | None:
        """The Redis URL of generative jobs' token streams, or None (streaming off)."""
        if self.stream_url:
            return self.stream_url
        broker = self.broker()
        return broker if broker.startswith(("redis://", "rediss://")) else None

    def node_db(self) -> str:
        if self.node_database_url:
            return self.node_database_url
        self.data.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data / 'node.sqlite'}"

    def blobs(self) -> Path:
        return self.blob_dir or self.data / "blobs"


def get_settings() -> Settings:
    return Settings()
