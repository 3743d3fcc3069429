"""Fixtures of the fault-injection suite (run it through deploy/dev/faults.sh).

faults.sh starts a private Postgres + Redis (ROOKERY_DATA_DIR, own ports) and the stack
(stack.sh start-bg) and exports everything this module reads. Scenarios inject faults
through `stack` (kill/restart a process, Postgres, Redis) and check with `Checks`, which
evaluates every check of a scenario, records one result row (collected into the table at
the end and .data/faults/report.md) and fails the test with the checks that did not hold.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.exit(f"{name} is not set: run the fault suite through deploy/dev/faults.sh (make test-faults)", 2)
    return value


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    base_url: str
    gateway_port: int
    users_grpc: int
    users_http: int
    data_dir: Path
    faults_dir: Path
    pg_port: int
    redis_port: int
    db: str
    request_timeout: float
    grpc_timeout: float
    max_in_flight: int
    header_read_timeout: float
    redis_timeout: float

    def grpc_port(self, svc: str) -> int:
        return self.users_grpc + ["users", "timeline", "notifications", "media"].index(svc)

    def http_port(self, svc: str) -> int:
        if svc == "gateway":
            return self.gateway_port
        return self.users_http + ["users", "timeline", "notifications", "media"].index(svc)

    def log(self, svc: str) -> Path:
        return self.data_dir / "log" / f"{svc}-{self.gateway_port}.log"


def _config() -> Config:
    users_grpc = int(_env("USERS_GRPC_PORT"))
    return Config(
        base_url=_env("ROOKERY_URL").rstrip("/"),
        gateway_port=int(_env("GATEWAY_PORT")),
        users_grpc=users_grpc,
        users_http=int(_env("USERS_HTTP_PORT")),
        data_dir=Path(_env("ROOKERY_DATA_DIR")),
        faults_dir=Path(_env("FAULTS_DIR")),
        pg_port=int(_env("ROOKERY_PG_PORT")),
        redis_port=int(_env("ROOKERY_REDIS_PORT")),
        db=_env("ROOKERY_DB"),
        request_timeout=int(_env("GATEWAY_REQUEST_TIMEOUT_MS")) / 1000,
        grpc_timeout=int(_env("GRPC_CALL_TIMEOUT_MS")) / 1000,
        max_in_flight=int(_env("GATEWAY_MAX_IN_FLIGHT")),
        header_read_timeout=int(_env("GATEWAY_HEADER_READ_TIMEOUT_MS")) / 1000,
        redis_timeout=int(_env("REDIS_TIMEOUT_MS")) / 1000,
    )


@pytest.fixture(scope="session")
def cfg() -> Config:
    return _config()


# ---------------------------------------------------------------------- the processes
SERVICES = ("users", "timeline", "notifications", "media", "gateway")


class Stack:
    """Fault injection and repair of the private stack, through the dev scripts."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def _script(self, script: str, *args: str, timeout: float = 120, env: dict | None = None, check: bool = True):
        full_env = dict(os.environ)
        full_env.update(env or {})
        res = subprocess.run(
            [str(ROOT / "deploy" / "dev" / script), *args],
            cwd=ROOT,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"{script} {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
        return res

    # processes of the stack
    def pid(self, svc: str) -> int | None:
        res = self._script("stack.sh", "pid", svc, check=False, timeout=30)
        out = res.stdout.strip()
        return int(out) if res.returncode == 0 and out.isdigit() else None

    def kill(self, svc: str, sig: str = "KILL") -> None:
        self._script("stack.sh", "kill-one", svc, sig, timeout=60)

    def start(self, svc: str, env: dict | None = None) -> None:
        self._script("stack.sh", "start-one", svc, env=env, timeout=120)

    def restart(self, svc: str, env: dict | None = None) -> None:
        self._script("stack.sh", "restart-one", svc, env=env, timeout=120)

    # Redis
    def redis_pid(self) -> int | None:
        try:
            pid = int((self.cfg.data_dir / "run" / "redis.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def redis_cli(self, *args: str, timeout: float = 10) -> str:
        res = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.cfg.redis_port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return res.stdout.strip()

    def redis_up(self) -> bool:
        try:
            return self.redis_cli("ping", timeout=3) == "PONG"
        except subprocess.TimeoutExpired:
            return False

    def redis_start(self) -> None:
        self._script("deps.sh", "start", "redis", timeout=60)

    def redis_resume(self) -> None:
        pid = self.redis_pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    # Postgres
    def pg_stop_immediate(self) -> None:
        self._script("deps.sh", "pg-stop-immediate", timeout=90)

    def pg_start(self) -> None:
        self._script("deps.sh", "start", "postgres", timeout=120)

    def pg_up(self) -> bool:
        res = subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.cfg.pg_port), "-t", "2"],
            capture_output=True,
        )
        return res.returncode == 0

    def psql(self, sql: str, timeout: float = 30) -> str:
        """Runs `sql` as the admin in the stack's database; returns stdout."""
        res = subprocess.run(self.psql_argv(sql), env=self.psql_env(), capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"psql failed: {res.stderr}")
        return res.stdout.strip()

    def psql_argv(self, sql: str) -> list[str]:
        return [
            "psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(self.cfg.pg_port), "-U", "rookery_admin", "-d", self.cfg.db, "-c", sql,
        ]  # fmt: skip

    @staticmethod
    def psql_env() -> dict:
        return {**os.environ, "PGPASSWORD": "rookery_admin", "PGCONNECT_TIMEOUT": "5"}

    # health
    def gateway_ready(self) -> bool:
        try:
            return httpx.get(f"{self.cfg.base_url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def ensure_healthy(self, timeout: float = 60) -> None:
        """Repairs whatever a previous scenario left broken, then waits for readiness."""
        self.redis_resume()
        if not self.redis_up():
            self.redis_start()
        if not self.pg_up():
            self.pg_start()
        for svc in SERVICES:
            if self.pid(svc) is None:
                self.start(svc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gateway_ready() and all(_ready(self.cfg.http_port(s)) for s in SERVICES[:4]):
                return
            time.sleep(0.5)
        raise RuntimeError("the stack did not become ready")

    def log_lines(self, svc: str, pattern: str, since_bytes: int = 0, limit: int = 5) -> list[str]:
        """Up to `limit` lines of svc's log after byte offset `since_bytes` matching `pattern`."""
        try:
            with open(self.cfg.log(svc), "rb") as f:
                f.seek(since_bytes)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        rx = re.compile(pattern)
        hits = [ln.strip() for ln in text.splitlines() if rx.search(ln)]
        return [h[:400] for h in hits[-limit:]]

    def log_size(self, svc: str) -> int:
        try:
            return self.cfg.log(svc).stat().st_size
        except OSError:
            return 0


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def stack(cfg) -> Stack:
    return Stack(cfg)


@pytest.fixture(autouse=True)
def healthy(stack):
    """Every scenario starts from a whole, ready stack, whatever the previous one left."""
    stack.ensure_healthy()
    yield
    stack.redis_resume()


# ---------------------------------------------------------------------- the API
@dataclass
class User:
    username: str
    token: str
    id: str


class Api:
    """Synchronous helper for set-up and verification (not the load)."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def call(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, path, headers=headers, **kw)

    def ok(self, method: str, path: str, token: str | None = None, **kw):
        r = self.call(method, path, token, **kw)
        assert r.is_success, f"{method} {path} -> {r.status_code} {r.text[:300]}"
        return r.json() if r.content else None

    def register(self, stem: str) -> User:
        app = self.ok(
            "POST",
            "/api/v1/apps",
            data={"client_name": "faults", "redirect_uris": "urn:ietf:wg:oauth:2.0:oob", "scopes": "read write follow push"},
        )
        app_token = self.ok(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app["client_id"],
                "client_secret": app["client_secret"],
                "scope": "read write follow push",
            },
        )["access_token"]
        username = f"{stem}{secrets.token_hex(4)}"
        token = self.ok(
            "POST",
            "/api/v1/accounts",
            app_token,
            data={
                "username": username,
                "email": f"{username}@example.com",
                "password": "correct horse battery",
                "agreement": "true",
                "locale": "en",
            },
        )["access_token"]
        me = self.ok("GET", "/api/v1/accounts/verify_credentials", token)
        return User(username, token, me["id"])

    def post_status(self, user: User, text: str) -> str:
        return self.ok("POST", "/api/v1/statuses", user.token, data={"status": text, "visibility": "public"})["id"]

    def notifications(self, user: User, types: tuple[str, ...] = (), limit: int = 80) -> list[dict]:
        params = [("limit", str(limit))] + [("types[]", t) for t in types]
        return self.ok("GET", "/api/v1/notifications", user.token, params=params)

    def close(self) -> None:
        self.http.close()


@dataclass
class World:
    api: Api
    alice: User  # the author everyone reads and favourites
    bob: User  # follows alice; favourites her statuses
    carol: User  # follows alice; follows/unfollows dave
    dave: User
    hot: list[str]  # ids of alice's statuses, the hot read set


@pytest.fixture(scope="session")
def world(cfg, stack) -> World:
    stack.ensure_healthy()
    api = Api(cfg.base_url)
    alice, bob, carol, dave = (api.register(s) for s in ("alice", "bob", "carol", "dave"))
    for u in (bob, carol):
        api.ok("POST", f"/api/v1/accounts/{alice.id}/follow", u.token)
    hot = [api.post_status(alice, f"hot status {i} #faults") for i in range(20)]
    yield World(api, alice, bob, carol, dave, hot)
    api.close()


# ---------------------------------------------------------------------- metrics
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int, timeout: float = 2.0) -> list[tuple[str, dict, float]]:
    """Samples of the Prometheus text at http://127.0.0.1:port/metrics ([] if unreachable)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout).text
    except httpx.HTTPError:
        return []
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            try:
                out.append((m.group(1), labels, float(m.group(3))))
            except ValueError:
                pass
    return out


def cache_counts(cfg: Config, services=("users", "timeline", "notifications", "media")) -> tuple[float, float]:
    """(hits, lookups) of every two-tier cache of the services, from `cache_requests_total`
    (crates/kit/src/cache.rs): a lookup starts at L1 (tier="l1", hit or miss); an L1 miss
    goes to L2 (tier="l2") when the cache has one. hits = L1 hits + L2 hits, lookups = L1
    hits + L1 misses."""
    hits = lookups = 0.0
    for svc in services:
        for name, labels, value in scrape(cfg.http_port(svc)):
            if name != "cache_requests_total":
                continue
            if labels.get("tier") == "l1":
                lookups += value
                if labels.get("result") == "hit":
                    hits += value
            elif labels.get("tier") == "l2" and labels.get("result") == "hit":
                hits += value
    return hits, lookups


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------- result rows
ROWS: list[dict] = []


class Checks:
    """Every check of one scenario; `done()` records the row and fails on any miss."""

    def __init__(self, scenario: str, injection: str):
        self.scenario = scenario
        self.injection = injection
        self.items: list[tuple[bool, str, str]] = []
        self.numbers: dict[str, object] = {}
        self.finished = False

    def check(self, ok: bool, name: str, detail: str = "") -> bool:
        self.items.append((bool(ok), name, detail))
        return bool(ok)

    def num(self, **kw) -> None:
        self.numbers.update(kw)

    def record(self, aborted: str | None = None) -> dict:
        failed = [(n, d) for ok, n, d in self.items if not ok]
        row = {
            "scenario": self.scenario,
            "injection": self.injection,
            "result": "ERROR" if aborted else ("FAIL" if failed else "PASS"),
            "held": [n for ok, n, _ in self.items if ok],
            "failed": [f"{n}: {d}" if d else n for n, d in failed] + ([aborted] if aborted else []),
            "numbers": dict(self.numbers),
        }
        ROWS.append(row)
        self.finished = True
        print(one_line(row))
        return row

    def done(self) -> None:
        row = self.record()
        if row["failed"]:
            pytest.fail(
                f"{self.scenario}: {len(row['failed'])} check(s) failed:\n  - " + "\n  - ".join(row["failed"]),
                pytrace=False,
            )


def one_line(row: dict) -> str:
    nums = ", ".join(f"{k}={v}" for k, v in row["numbers"].items())
    held = "; ".join(row["held"]) or "-"
    failed = "; ".join(row["failed"])
    return (
        f"[{row['result']}] {row['scenario']} | {row['injection']} | held: {held}"
        + (f" | FAILED: {failed}" if failed else "")
        + f" | {nums}"
    )


@pytest.fixture
def checks(request):
    made: list[Checks] = []

    def make(scenario: str, injection: str) -> Checks:
        c = Checks(scenario, injection)
        made.append(c)
        return c

    yield make
    for c in made:
        if not c.finished:
            c.record(aborted="scenario aborted before its checks ran (see the traceback)")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not ROWS:
        return
    tr = terminalreporter
    tr.section("fault-injection results")
    for row in ROWS:
        tr.write_line(one_line(row))
    lines = [
        "# Fault-injection suite (make test-faults)",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}; settings: "
        + ", ".join(
            f"{k}={os.environ.get(k, '')}"
            for k in ("GATEWAY_REQUEST_TIMEOUT_MS", "GRPC_CALL_TIMEOUT_MS", "GATEWAY_MAX_IN_FLIGHT",
                      "GATEWAY_HEADER_READ_TIMEOUT_MS", "REDIS_TIMEOUT_MS")
        ),  # fmt: skip
        "",
        "| scenario | injection | result | held | failed | numbers |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in ROWS:
        lines.append(
            "| "
            + " | ".join(
                _md(x)
                for x in (
                    row["scenario"],
                    row["injection"],
                    row["result"],
                    "; ".join(row["held"]) or "-",
                    "; ".join(row["failed"]) or "-",
                    ", ".join(f"{k}={v}" for k, v in row["numbers"].items()),
                )
            )
            + " |"
        )
    faults_dir = os.environ.get("FAULTS_DIR")
    if faults_dir:
        path = Path(faults_dir) / "report.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        tr.write_line(f"report written to {path}")
