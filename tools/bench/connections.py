#!/usr/bin/env python3
"""connections.py: the idle and slow clients of tools/bench/connections.

Opens --idle keep-alive connections to 127.0.0.1:PORT, each of which sends one GET PATH, reads
the answer and then stays open without a byte more; once all of them are held, opens --slow
connections that send a request line and then one header byte every --interval seconds, never
finishing their headers (slowloris).  A slow connection the server closes is counted and opened
again.  Source addresses are spread over 127.1.0.0/16 (idle) and 127.2.0.0/16 (slow),
--per-address connections each, so that a per-address cap is not what is measured.

When everything is open it creates --ready-file.  On SIGTERM it prints one line and exits:
  GN_LOAD <idle held> <idle lost> <idle failed> <slow open> <slow closed by the server>
(idle lost: held, then closed by the server; idle failed: never got their answer).
One process, one epoll loop: 11,000 sockets need `ulimit -n` above that.
"""
import argparse
import errno
import os
import select
import signal
import socket
import sys
import time

CONNECTING, WAITING, HELD, TRICKLING = range(4)
OUTSTANDING = 256  # connects in flight at once: the server's listen backlog is 1024


class Conn:
    __slots__ = ("sock", "kind", "index", "state", "data")

    def __init__(self, sock, kind, index):
        self.sock = sock
        self.kind = kind
        self.index = index
        self.state = CONNECTING
        self.data = b""


def source_address(block, index, per_address):
    n = index // per_address
    return "127.%d.%d.%d" % (block, n // 250, n % 250 + 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--path", default="/health")
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--per-address", type=int, default=100)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--ready-file")
    args = parser.parse_args()

    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % args.path).encode()
    slow_start = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " % args.path).encode()
    poller = select.epoll()
    conns = {}
    stats = {"held": 0, "lost": 0, "failed": 0, "slow_closed": 0}
    next_index = {"idle": 0, "slow": 0}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    def open_one(kind, index=None):
        if index is None:
            index = next_index[kind]
            next_index[kind] += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source_address(1 if kind == "idle" else 2, index, args.per_address), 0))
        code = sock.connect_ex(("127.0.0.1", args.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            stats["failed" if kind == "idle" else "slow_closed"] += 1
            return
        conns[sock.fileno()] = Conn(sock, kind, index)
        poller.register(sock.fileno(), select.EPOLLOUT)

    def drop(fd, conn):
        poller.unregister(fd)
        conn.sock.close()
        del conns[fd]
        if conn.kind == "idle":
            if conn.state == HELD:
                stats["held"] -= 1
                stats["lost"] += 1
            else:
                stats["failed"] += 1
        else:
            stats["slow_closed"] += 1

    def in_flight():
        return sum(1 for c in conns.values() if c.state in (CONNECTING, WAITING))

    ready = False
    last_trickle = time.monotonic()
    while not stopping:
        if next_index["idle"] < args.idle:
            for _ in range(max(0, OUTSTANDING - in_flight())):
                if next_index["idle"] < args.idle:
                    open_one("idle")
        elif stats["held"] + stats["failed"] + stats["lost"] >= args.idle:
            while next_index["slow"] < args.slow:
                open_one("slow")
            if not ready and all(c.state != CONNECTING for c in conns.values()):
                ready = True
                if args.ready_file:
                    open(args.ready_file, "w").close()
        try:
            events = poller.poll(0.1)
        except InterruptedError:
            continue
        for fd, mask in events:
            conn = conns.get(fd)
            if conn is None:
                continue
            if conn.state == CONNECTING:
                if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    drop(fd, conn)
                    continue
                try:
                    conn.sock.send(request if conn.kind == "idle" else slow_start)
                except OSError:
                    drop(fd, conn)
                    continue
                conn.state = WAITING if conn.kind == "idle" else TRICKLING
                poller.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                continue
            try:
                chunk = conn.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk or conn.kind == "slow":
                drop(fd, conn)
                if conn.kind == "slow" and not stopping:
                    open_one("slow", conn.index)  # again, from the same address
                continue
            conn.data += chunk
            head, sep, body = conn.data.partition(b"\r\n\r\n")
            if conn.state == WAITING and sep:
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(body) >= length:
                    conn.state = HELD
                    conn.data = b""
                    stats["held"] += 1
        now = time.monotonic()
        if now - last_trickle >= args.interval:
            last_trickle = now
            for fd, conn in list(conns.items()):
                if conn.state == TRICKLING:
                    try:
                        conn.sock.send(b"x")
                    except OSError:
                        drop(fd, conn)

    slow_open = sum(1 for c in conns.values() if c.state == TRICKLING)
    print("GN_LOAD %d %d %d %d %d" % (stats["held"], stats["lost"], stats["failed"], slow_open,
                                       stats["slow_closed"]), flush=True)
    os._exit(0)  # closing 11,000 sockets one by one is not part of the measurement


if __name__ == "__main__":
    sys.exit(main())
