#!/usr/bin/python3
"""WebSocket peers for tests/websocket.rs, with Debian's python3-websockets: an echo
server, and a client that runs one case through the gateway and prints one JSON
line.

    peer.py server PORT
    peer.py client PORT CASE [--token TOKEN] [--path PATH] [--ca CA_FILE]

With --ca the client speaks wss:// (TLS, trusting CA_FILE, SNI api.example.com).

CASE:
  echo    ten text messages, each echoed
  big     one 4 MiB binary message of random bytes, echoed whole (no compression)
  ping    a ping answered by a pong
  close   a close with code 4001: the server's close code comes back
  idle    one message, then silence: when and how the connection ends
  hold    a message every 0.4 s for 2 s (the drain test), then silence
"""

import asyncio
import json
import os
import ssl
import sys
import time

import websockets


async def serve(port):
    async def echo(ws, path=None):
        try:
            async for message in ws:
                await ws.send(message)
        except websockets.ConnectionClosed:
            pass

    async with websockets.serve(echo, "127.0.0.1", port, max_size=16 << 20):
        print("listening", flush=True)
        await asyncio.Future()


async def client(port, case, token, path, ca):
    headers = {"authorization": "Bearer " + token} if token else {}
    tls = {}
    if ca:
        tls = {"ssl": ssl.create_default_context(cafile=ca),
               "server_hostname": "api.example.com"}
    uri = "%s://127.0.0.1:%d%s" % ("wss" if ca else "ws", port, path)
    report = {"case": case}
    started = time.time()
    try:
        async with websockets.connect(uri, extra_headers=headers, max_size=16 << 20,
                                      ping_interval=None, close_timeout=2,
                                      compression=None, **tls) as ws:
            report["status"] = 101
            if case == "echo":
                answers = []
                for i in range(10):
                    await ws.send("message %d" % i)
                    answers.append(await ws.recv())
                report["answers"] = answers
            elif case == "big":
                data = os.urandom(4 << 20)
                await ws.send(data)
                back = await ws.recv()
                report["same"] = back == data
                report["length"] = len(back)
            elif case == "ping":
                pong = await ws.ping(b"are you there")
                await asyncio.wait_for(pong, 5)
                report["pong"] = True
            elif case == "close":
                await ws.close(code=4001, reason="done here")
                report["close_code"] = ws.close_code
            elif case in ("idle", "hold"):
                await ws.send("first")
                report["first"] = await ws.recv()
                if case == "hold":
                    answers = []
                    for i in range(5):
                        await asyncio.sleep(0.4)
                        await ws.send("held %d" % i)
                        answers.append(await ws.recv())
                    report["answers"] = answers
                try:
                    await asyncio.wait_for(ws.recv(), 30)
                except websockets.ConnectionClosed as e:
                    report["closed_after"] = round(time.time() - started, 3)
                    report["close_code"] = e.code
    except websockets.exceptions.InvalidStatusCode as e:
        report["status"] = e.status_code
    except (websockets.ConnectionClosed, OSError) as e:
        report["error"] = repr(e)
    print(json.dumps(report), flush=True)


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        asyncio.run(serve(port))
    else:
        token = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
        path = sys.argv[sys.argv.index("--path") + 1] if "--path" in sys.argv else "/ws"
        ca = sys.argv[sys.argv.index("--ca") + 1] if "--ca" in sys.argv else None
        asyncio.run(client(port, sys.argv[3], token, path, ca))


if __name__ == "__main__":
    main()
