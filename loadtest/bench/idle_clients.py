#!/usr/bin/env python3
"""Idle keep-alive connections and the resident memory they cost a server.

Used by loadtest/bench/idle-memory (standard library only, any python3):

    idle_clients.py --port P [--tls] --conns N --pids PID[,PID...] [--settle S]

Reads VmRSS of the given processes (summed: nginx's master and worker), then opens N
connections to 127.0.0.1:P, sends one `GET /` on each and reads its whole answer
(Content-Length framed), keeps them all open and idle, reads VmRSS again, closes them
all, waits for the server to let go (SETTLE seconds) and reads VmRSS a last time.
Prints one tab-separated line:

    conns  rss_before_kib  rss_during_kib  bytes_per_conn  rss_after_kib  open_s

A connection that fails or gets no complete 200 stops the run (exit status 1): a
server that cannot hold N connections must not be measured as if it did.
"""

import argparse
import socket
import ssl
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def read_response(sock):
    """Reads one Content-Length framed response; returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return status


def open_idle(port, tls, n, deadline):
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    conns = []
    for i in range(n):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {i} of {n} connections opened in time")
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
        sock.sendall(request)
        status = read_response(sock)
        if status != 200:
            raise ConnectionError(f"connection {i}: status {status}")
        conns.append(sock)
    return conns


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--pids", required=True, help="comma-separated PIDs whose VmRSS is summed")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each reading")
    p.add_argument("--max-open-s", type=float, default=120.0, help="give up opening after this")
    a = p.parse_args()
    pids = [int(x) for x in a.pids.split(",") if x]

    time.sleep(a.settle)
    before = rss_kib(pids)
    started = time.monotonic()
    try:
        conns = open_idle(a.port, a.tls, a.conns, started + a.max_open_s)
    except (OSError, ValueError, TimeoutError) as e:
        print(f"idle_clients: {e}", file=sys.stderr)
        return 1
    open_s = time.monotonic() - started
    time.sleep(a.settle)
    during = rss_kib(pids)
    for c in conns:
        c.close()
    conns.clear()
    time.sleep(a.settle)
    after = rss_kib(pids)
    per_conn = (during - before) * 1024 / a.conns
    print(f"{a.conns}\t{before}\t{during}\t{per_conn:.0f}\t{after}\t{open_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
