#!/usr/bin/python3
"""An HTTP/2 client for tests/http2.rs (Debian's python3-h2): floods a gateway with
one kind of frame and reports how the connection ended, or sends a few plain
requests on one connection.

    floods.py PORT KIND COUNT [--tls] [--path P] [--wait-close]

KIND is one of:
  resets        COUNT streams opened and reset at once (CVE-2023-44487, rapid reset)
  pings         COUNT PING frames
  settings      COUNT SETTINGS frames
  empty_data    one POST stream, then COUNT DATA frames with no payload
  continuation  one HEADERS without END_HEADERS, then COUNT CONTINUATION frames
  requests      COUNT GET requests (of --path, default /) on one connection, in turn
  big_headers   one GET with a COUNT-byte header value
  streams       COUNT GET requests (of --path) on one connection at once, sent before
                the gateway's SETTINGS arrive (so past its concurrent-stream limit)
  stall         one POST announcing COUNT bytes that sends one and then stalls
  post          one POST of COUNT bytes in three DATA frames, without content-length

With --wait-close the client reads on after its answers until the gateway closes
(an idle timeout, a drain). Prints one JSON line: {"goaway": error code or null,
"statuses": [...], "bodies": [...], "reset_streams": {stream: code}, "closed":
bool, "seconds": time to the end}.
"""

import json
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack


def connect(port, tls):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    return sock


def raw_frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def request_headers(path="/", method="GET", extra=()):
    return [(":method", method), (":path", path), (":scheme", "http"),
            (":authority", "localhost")] + list(extra)


def main():
    port, kind, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    tls = "--tls" in sys.argv
    wait_close = "--wait-close" in sys.argv
    path = sys.argv[sys.argv.index("--path") + 1] if "--path" in sys.argv else "/"
    started = time.time()
    sock = connect(port, tls)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    report = {"goaway": None, "statuses": [], "bodies": [], "reset_streams": {}, "closed": False}
    bodies = {}
    out = b""
    if kind == "resets":
        for _ in range(count):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, request_headers(), end_stream=True)
            conn.reset_stream(sid)
            out += conn.data_to_send()
    elif kind == "pings":
        for i in range(count):
            conn.ping(struct.pack(">Q", i))
            out += conn.data_to_send()
    elif kind == "settings":
        for _ in range(count):
            out += raw_frame(0x4, 0, 0, struct.pack(">HI", 0x3, 100))
    elif kind == "empty_data":
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers("/", "POST"), end_stream=False)
        out += conn.data_to_send()
        for _ in range(count):
            out += raw_frame(0x0, 0, sid, b"")
    elif kind == "continuation":
        block = hpack.Encoder().encode(request_headers(extra=[("x-long", "v" * 64)]))
        out += raw_frame(0x1, 0, 1, block[:4])
        rest = block[4:]
        for i in range(count):
            piece, rest = rest[:1], rest[1:]
            out += raw_frame(0x9, 0, 1, piece or b"")
    elif kind == "requests":
        pass
    elif kind == "post":
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers(path, "POST"), end_stream=False)
        body = bytes((ord("a") + i % 26) for i in range(count))
        third = len(body) // 3
        for piece in (body[:third], body[third:2 * third], body[2 * third:]):
            conn.send_data(sid, piece, end_stream=False)
        conn.end_stream(sid)
        out += conn.data_to_send()
    elif kind == "streams":
        for _ in range(count):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, request_headers(path), end_stream=True)
        out += conn.data_to_send()
    elif kind == "stall":
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers(path, "POST", [("content-length", str(count))]),
                          end_stream=False)
        conn.send_data(sid, b"x", end_stream=False)
        out += conn.data_to_send()
    elif kind == "big_headers":
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers(path, extra=[("x-big", "b" * count)]), end_stream=True)
        out += conn.data_to_send()
    else:
        sys.exit("unknown kind " + kind)
    try:
        sock.sendall(out)
    except OSError:
        report["closed"] = True
    sent = 0
    deadline = time.time() + 10
    while time.time() < deadline:
        if kind == "requests" and sent < count and len(report["statuses"]) == sent:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, request_headers(path), end_stream=True)
            sent += 1
        try:
            data_out = conn.data_to_send()
            if data_out:
                sock.sendall(data_out)
            data = sock.recv(65536)
        except (OSError, socket.timeout):
            report["closed"] = True
            break
        if not data:
            report["closed"] = True
            break
        try:
            events = conn.receive_data(data)
        except Exception as e:  # the gateway's frames after a flood may upset h2
            report["error"] = repr(e)
            break
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                report["statuses"].append(int(dict(ev.headers)[b":status"]))
            elif isinstance(ev, h2.events.StreamReset):
                report["reset_streams"][ev.stream_id] = int(ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                report["goaway"] = int(ev.error_code)
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                report["bodies"].append(bodies.pop(ev.stream_id, b"").decode("utf-8", "replace"))
        if report["goaway"] is not None or wait_close:
            continue
        wanted = count if kind in ("requests", "streams") else 1
        answered = len(report["bodies"]) + len(report["reset_streams"])
        if kind in ("requests", "big_headers", "post", "streams", "stall") and answered >= wanted:
            break
    report["seconds"] = round(time.time() - started, 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
