"""Real local servers for tests, started as separate processes on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server process exited early with code {proc.returncode}: {proc.args}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server did not open port {port} within {timeout}s: {proc.args}")


def executable(name: str) -> str:
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed; run `make setup` (pip install -e '.[test]')")
    return found


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def start(args: list[str], port: int, log_dir: Path, name: str, env: dict[str, str] | None = None) -> Server:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    out = open(log_path, "wb")  # noqa: SIM115 - kept open for the process lifetime
    proc = subprocess.Popen(
        args,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        wait_for_port(port, proc)
    except Exception:
        stop_process(proc)
        raise RuntimeError(f"{name} failed to start; log:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    return Server(port=port, proc=proc, log_path=log_path)


@contextlib.contextmanager
def moto_server(log_dir: Path, auth: bool = False) -> Iterator[Server]:
    """moto_server (S3). With ``auth``, moto checks access keys against its IAM: a user with an
    allow-all policy is created through the first unauthenticated calls and its key pair is in
    ``server.extra['access_key']`` / ``['secret_key']``."""
    port = free_port()
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if auth else {}
    server = start([executable("moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, log_dir, "moto", env)
    try:
        if auth:
            import json

            import boto3

            iam = boto3.client(
                "iam",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id="bootstrap",
                aws_secret_access_key="bootstrap",
            )
            iam.create_user(UserName="landcover")
            key = iam.create_access_key(UserName="landcover")["AccessKey"]
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            iam.put_user_policy(UserName="landcover", PolicyName="all", PolicyDocument=json.dumps(policy))
            server.extra |= {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}
        yield server
    finally:
        server.stop()


MONGO_USER = ("landcover", "s3cret-pass")

SILENT_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
held = []
while True:  # accept every connection, never read or write: a server that does not answer
    held.append(s.accept()[0])
"""


@contextlib.contextmanager
def silent_server(log_dir: Path) -> Iterator[Server]:
    """A process listening on a loopback port that accepts TCP connections and never answers."""
    port = free_port()
    server = start([sys.executable, "-c", SILENT_SERVER, str(port)], port, log_dir, "silent")
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def mongo_server(log_dir: Path, auth: bool = False) -> Iterator[Server]:
    """secantusd (MongoDB wire protocol). With ``auth``, a user MONGO_USER is provisioned first
    (the server's documented way: create the user without auth, restart with --auth)."""
    port = free_port()
    storage = ":memory:"
    if auth:
        storage = str(log_dir / f"secantus-auth-{port}")
    args = [executable("secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage]
    if auth:
        import pymongo

        server = start(args, port, log_dir, "secantusd-provision")
        try:
            client = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=5000)
            client.admin.command("createUser", MONGO_USER[0], pwd=MONGO_USER[1], roles=["root"])
            client.close()
        finally:
            server.stop()
        args.append("--auth")
    server = start(args, port, log_dir, "secantusd")
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def dask_cluster(
    log_dir: Path,
    n_workers: int = 2,
    worker_env: dict[str, str] | None = None,
    worker_args: dict[int, list[str]] | None = None,
) -> Iterator[Server]:
    """A `dask scheduler` and ``n_workers`` `dask worker` processes (each with its nanny), the
    workers' environment this one's plus ``worker_env``; ``worker_args``: extra arguments of
    worker i (``{0: ["--resources", "GPU=1"]}``)."""
    port = free_port()
    env = {"PYTHONUNBUFFERED": "1"}
    scheduler = start(
        [executable("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        port,
        log_dir,
        "dask-scheduler",
        env,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(n_workers):
            log_path = log_dir / f"dask-worker-{port}-{i}.log"
            workers.append(
                subprocess.Popen(
                    [
                        executable("dask"),
                        "worker",
                        f"tcp://127.0.0.1:{port}",
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--name",
                        f"worker-{i}",
                        "--memory-limit",
                        "4GiB",
                        *(worker_args or {}).get(i, []),
                    ],
                    stdout=open(log_path, "wb"),  # noqa: SIM115
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, **env, **(worker_env or {})},
                )
            )
        _wait_for_workers(f"tcp://127.0.0.1:{port}", n_workers)
        scheduler.extra["workers"] = workers
        yield scheduler
    finally:
        for w in workers:
            stop_process(w)
        scheduler.stop()


def _wait_for_workers(address: str, n: int, timeout: float = 90.0) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as client:
        client.wait_for_workers(n, timeout=timeout)


@contextlib.contextmanager
def gcs_emulator(log_dir: Path) -> Iterator[Server]:
    """gcp-storage-emulator (Google Cloud Storage JSON API), in memory."""
    port = free_port()
    server = start(
        [executable("gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        port,
        log_dir,
        "gcs",
    )
    try:
        yield server
    finally:
        server.stop()


@dataclass
class FaultProxy:
    """A tests/faultproxy.py process in front of a server: connect to ``port`` instead of the
    server's; ``arm``/``down`` start outages, ``status`` says what happened."""

    server: Server
    control: int

    @property
    def port(self) -> int:
        return self.server.port

    def _send(self, line: str) -> object:
        with socket.create_connection(("127.0.0.1", self.control), timeout=10) as s:
            s.sendall(line.encode() + b"\n")
            return json.loads(s.makefile().readline())

    def arm(self, pattern: bytes, seconds: float) -> None:
        """An outage of ``seconds`` the first time a client sends ``pattern`` (after the
        patterns armed before it have fired)."""
        self._send(f"arm {pattern.hex()} {seconds}")

    def reject(self, pattern: bytes, status: int, code: str) -> None:
        """Answer every request carrying ``pattern`` with the S3 error ``code`` (HTTP ``status``)."""
        self._send(f"reject {pattern.hex()} {status} {code}")

    def down(self, seconds: float) -> None:
        self._send(f"down {seconds}")

    def status(self) -> dict[str, object]:
        answer = self._send("status")
        assert isinstance(answer, dict)
        return answer


@contextlib.contextmanager
def fault_proxy(target_port: int, log_dir: Path, port: int | None = None) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``target_port``, on ``port`` (default: a free one)."""
    port, control = port or free_port(), free_port()
    args = [sys.executable, "-m", "tests.faultproxy", "--port", str(port), "--target", str(target_port)]
    server = start(
        [*args, "--control", str(control)], port, log_dir, "faultproxy", {"PYTHONPATH": str(Path(__file__).parents[1])}
    )
    wait_for_port(control, server.proc)
    try:
        yield FaultProxy(server, control)
    finally:
        server.stop()


CEPH_TOOLS = ("ceph", "ceph-authtool", "monmaptool", "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin")
RGW_KEYS = ("LANDCOVERTESTKEY", "landcover-test-secret-key")


def ceph_missing() -> list[str]:
    """The Ceph programs the S3-with-authentication tests need that are not installed."""
    return [tool for tool in CEPH_TOOLS if shutil.which(tool) is None]


def _ceph_conf(root: Path, fsid: str, mon: tuple[int, int], rgw: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon[0]},v1:127.0.0.1:{mon[1]}]
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms client mode = crc secure
ms bind ipv6 = false
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 536870912
osd max object name len = 460
osd max object namespace len = 64
run dir = {root}/run
log file = {root}/log/$name.log
admin socket = {root}/run/$name.asok
mon data = {root}/mon/$name
osd data = {root}/osd/$name
keyring = {root}/keyring
[client.admin]
rgw frontends = beast endpoint=127.0.0.1:{rgw}
"""


@contextlib.contextmanager
def ceph_rgw(root: Path, timeout: float = 120.0) -> Iterator[Server]:
    """Ceph's S3 gateway (radosgw, from Debian's ceph packages) on a cluster of one monitor and
    one OSD keeping objects in memory, all on loopback under ``root``. Unlike moto it verifies
    every request's SigV4 signature (header or presigned query string) and bucket policies, as
    production S3 servers do. A user's key pair is ``RGW_KEYS``."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("run", "log", "mon", "osd/osd.0"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    mon, rgw = (free_port(), free_port()), free_port()
    conf = root / "ceph.conf"
    fsid = str(uuid.uuid4())
    conf.write_text(_ceph_conf(root, fsid, mon, rgw))

    def run(*args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    run(
        "ceph-authtool", "--create-keyring", str(root / "keyring"), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"
    )
    fsid = next(line.split("=", 1)[1].strip() for line in conf.read_text().splitlines() if line.startswith("fsid"))
    addr = f"[v2:127.0.0.1:{mon[0]},v1:127.0.0.1:{mon[1]}]"
    run("monmaptool", "--create", "--addv", "a", addr, "--fsid", fsid, str(root / "monmap"))
    run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(root / "monmap"), "-c", str(conf))
    daemons = [start(["ceph-mon", "-f", "-i", "a", "-c", str(conf)], mon[1], root / "log", "ceph-mon")]
    try:
        osd = run("ceph", "-c", str(conf), "osd", "create").strip()
        run("ceph-osd", "-c", str(conf), "-i", osd, "--mkfs")
        run("ceph", "-c", str(conf), "osd", "crush", "add", f"osd.{osd}", "1.0", "host=localhost", "root=default")
        log = open(root / "log" / "ceph-osd.out", "wb")  # noqa: SIM115 - kept open for the process lifetime
        daemons.append(
            Server(
                0,
                subprocess.Popen(
                    ["ceph-osd", "-f", "-c", str(conf), "-i", osd],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                root / "log" / "ceph-osd.out",
            )
        )
        deadline = time.monotonic() + timeout
        while json.loads(run("ceph", "-c", str(conf), "osd", "stat", "-f", "json")).get("num_up_osds", 0) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OSD did not come up within {timeout}s; see {root / 'log'}")
            time.sleep(0.5)
        gateway = start(["radosgw", "-f", "-n", "client.admin", "-c", str(conf)], rgw, root / "log", "radosgw")
        daemons.append(gateway)
        access, secret = RGW_KEYS
        run(
            "radosgw-admin", "-c", str(conf), "user", "create", "--uid=landcover", "--display-name=landcover",
            f"--access-key={access}", f"--secret={secret}",
        )  # fmt: skip
        gateway.extra |= {"access_key": access, "secret_key": secret}
        yield gateway
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
