"""A loopback TCP proxy with an outage switch, run as its own process (like the other test
servers): ``python -m tests.faultproxy --target PORT --port P --control C``.

During an outage every open connection is reset (RST) and the listening socket is closed, so new
connections are refused, as when a server restarts or a load balancer drops its pool. An outage
starts on command (``down SECONDS``) or when an armed pattern shows up in the bytes a client
sends (``arm HEX SECONDS``): an S3 request line such as ``PUT /composites-…/`` or a MongoDB
command naming a collection, so a test can cut a service off in the middle of one stage. Armed
patterns fire once each, in the order armed.

Control protocol (one line per connection on the control port):
- ``arm HEX SECONDS``: an outage the first time a client sends the pattern;
- ``down SECONDS``: an outage now;
- ``reject HEX STATUS S3CODE``: every request carrying the pattern is answered with that S3
  error before it reaches the server (a full MinIO answers ``507 XMinioStorageFull``);
- ``status``: a JSON line ``{"down", "fired", "armed", "connections", "rejected"}``.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Trigger:
    pattern: bytes
    seconds: float


@dataclass
class Proxy:
    port: int
    target: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    conns: set[socket.socket] = field(default_factory=set)
    armed: list[Trigger] = field(default_factory=list)
    fired: list[dict[str, object]] = field(default_factory=list)
    down_until: float = 0.0
    listener: socket.socket | None = None
    tail: dict[int, bytes] = field(default_factory=dict)  # per connection: the last bytes seen
    rejects: list[tuple[bytes, bytes]] = field(default_factory=list)  # (pattern, canned HTTP answer)
    rejected: int = 0

    # listening -----------------------------------------------------------------------------
    def open_listener(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self.listener = sock
        threading.Thread(target=self.accept_loop, args=(sock,), daemon=True).start()

    def accept_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return  # closed for an outage
            if self.is_down():
                reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                upstream.settimeout(None)
            except OSError:
                reset(client)
                continue
            with self.lock:
                self.conns |= {client, upstream}
            threading.Thread(target=self.pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()

    def pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        key = id(src)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client and self.check(key, data):
                    return  # the outage reset both ends
                if from_client and (answer := self.rejection(key, data)) is not None:
                    src.sendall(answer)  # the server's refusal, before the request reaches it
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.tail.pop(key, None)
                gone = {src, dst} & self.conns
                self.conns -= gone
            for s in gone:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    # outages -------------------------------------------------------------------------------
    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def rejection(self, key: int, data: bytes) -> bytes | None:
        with self.lock:
            seen = self.tail.get(key, b"")[-256:] + data
            for pattern, answer in self.rejects:
                if pattern in seen:
                    self.rejected += 1
                    return answer
        return None

    def check(self, key: int, data: bytes) -> bool:
        with self.lock:
            seen = self.tail.get(key, b"") + data
            self.tail[key] = seen[-256:]
            if not self.armed:
                return False
            trigger = self.armed[0]
            if trigger.pattern not in seen:
                return False
            self.armed.pop(0)
            self.fired.append({"pattern": trigger.pattern.hex(), "at": time.time(), "seconds": trigger.seconds})
        self.go_down(trigger.seconds)
        return True

    def go_down(self, seconds: float) -> None:
        with self.lock:
            self.down_until = time.monotonic() + seconds
            conns, self.conns = set(self.conns), set()
            listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        for conn in conns:
            reset(conn)
        threading.Thread(target=self.come_back, args=(seconds,), daemon=True).start()

    def come_back(self, seconds: float) -> None:
        time.sleep(seconds)
        while self.is_down():  # extended by a later outage
            time.sleep(self.down_until - time.monotonic())
        with self.lock:
            if self.listener is not None:
                return
        for _ in range(50):
            try:
                self.open_listener()
                return
            except OSError:
                time.sleep(0.1)

    # control -------------------------------------------------------------------------------
    def serve_control(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
        while True:
            conn, _ = sock.accept()
            with conn:
                line = conn.makefile().readline().split()
                answer: object = "ok"
                if line[:1] == ["arm"]:
                    with self.lock:
                        self.armed.append(Trigger(bytes.fromhex(line[1]), float(line[2])))
                elif line[:1] == ["reject"]:  # reject HEX STATUS S3CODE: answer as S3 would, e.g. a full disk
                    body = f"<Error><Code>{line[3]}</Code><Message>refused by the test</Message></Error>".encode()
                    head = f"HTTP/1.1 {line[2]} Refused\r\nContent-Type: application/xml\r\n"
                    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    with self.lock:
                        self.rejects.append((bytes.fromhex(line[1]), head.encode() + body))
                elif line[:1] == ["down"]:
                    self.go_down(float(line[1]))
                elif line[:1] == ["status"]:
                    with self.lock:
                        answer = {
                            "down": self.is_down(),
                            "fired": list(self.fired),
                            "armed": len(self.armed),
                            "connections": len(self.conns),
                            "rejected": self.rejected,
                        }
                conn.sendall((json.dumps(answer) + "\n").encode())


def reset(sock: socket.socket) -> None:
    """Close with RST, as a crashed server or a dropped route does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--control", type=int, required=True)
    args = parser.parse_args()
    proxy = Proxy(args.port, args.target)
    proxy.open_listener()
    proxy.serve_control(args.control)


if __name__ == "__main__":
    main()
