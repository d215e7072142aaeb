"""Start and stop the local pieces (for now: the sandbox) on loopback, in this process."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from sandbox.app import create_app
from sandbox.world import FaultSettings

HOME = Path(".handover")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    """A uvicorn server running in a background thread."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_sandbox(
    *,
    db: Path | None,
    seed: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    faults: FaultSettings | None = None,
) -> Running:
    """Serve a sandbox world in a thread and wait until it answers ``/healthz``."""
    app = create_app(db, seed=seed, faults=faults)
    port = port or free_port(host)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="sandbox", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Running(url=url, server=server, thread=thread)
        except httpx.HTTPError:
            time.sleep(0.05)
    server.should_exit = True
    raise RuntimeError(f"the sandbox did not answer on {url} within 30 s")
