#!/usr/bin/python3
"""gRPC peers for tests/grpc.rs, with Debian's python3-grpcio: the Echo service
(tests/grpc/echo.proto) as a server, and a client that runs one case and prints one
JSON line. Stubs are generated into a temporary folder with grpc_tools.protoc.

    peer.py server PORT
    peer.py client PORT CASE [--timeout SECONDS] [--token TOKEN]

CASE: unary, error, server_stream, client_stream, bidi, slow.
"""

import json
import os
import sys
import tempfile
import threading
import time
from concurrent import futures


def load_stubs():
    here = os.path.dirname(os.path.abspath(__file__))
    out = tempfile.mkdtemp(prefix="portico-grpc-")
    from grpc_tools import protoc
    code = protoc.main(["protoc", "-I" + here, "--python_out=" + out,
                        "--grpc_python_out=" + out, os.path.join(here, "echo.proto")])
    if code != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    import echo_pb2
    import echo_pb2_grpc
    return echo_pb2, echo_pb2_grpc


def serve(port):
    import grpc
    pb, rpc = load_stubs()

    class Echo(rpc.EchoServicer):
        def Say(self, request, context):
            if request.delay_ms:
                time.sleep(request.delay_ms / 1000)
            if request.text.startswith("fail:"):
                _, code, message = request.text.split(":", 2)
                context.abort(grpc.StatusCode[code], message)
            context.set_trailing_metadata((("x-served-by", "python-grpc"),))
            return pb.Text(text=request.text)

        def Count(self, request, context):
            for i in range(1, request.value + 1):
                yield pb.Number(value=i)

        def Sum(self, request_iterator, context):
            return pb.Number(value=sum(n.value for n in request_iterator))

        def Chat(self, request_iterator, context):
            for t in request_iterator:
                yield pb.Text(text="echo: " + t.text)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rpc.add_EchoServicer_to_server(Echo(), server)
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


def client(port, case, timeout, token):
    import grpc
    pb, rpc = load_stubs()
    channel = grpc.insecure_channel("127.0.0.1:%d" % port)
    stub = rpc.EchoStub(channel)
    metadata = (("authorization", "Bearer " + token),) if token else None
    report = {"case": case}
    try:
        if case == "unary":
            reply, call = stub.Say.with_call(pb.Text(text="hello"), timeout=timeout, metadata=metadata)
            report["reply"] = reply.text
            report["trailers"] = dict(call.trailing_metadata())
        elif case == "error":
            stub.Say(pb.Text(text="fail:NOT_FOUND:no such thing here"), timeout=timeout)
        elif case == "slow":
            stub.Say(pb.Text(text="slow", delay_ms=3000), timeout=timeout, metadata=metadata)
        elif case == "server_stream":
            report["values"] = [n.value for n in stub.Count(pb.Number(value=5), timeout=timeout)]
        elif case == "client_stream":
            report["sum"] = stub.Sum(iter(pb.Number(value=v) for v in range(1, 101)), timeout=timeout).value
        elif case == "bidi":
            # Each message is sent only after the answer to the one before came
            # back: a gateway that buffered either direction would hang here.
            turn = threading.Event()
            answers = []

            def texts():
                for i in range(5):
                    yield pb.Text(text="m%d" % i)
                    if not turn.wait(5):
                        return
                    turn.clear()

            for reply in stub.Chat(texts(), timeout=timeout):
                answers.append(reply.text)
                turn.set()
            report["answers"] = answers
        report["code"] = "OK"
    except grpc.RpcError as e:
        report["code"] = e.code().name
        report["details"] = e.details()
    print(json.dumps(report), flush=True)


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        serve(port)
    else:
        timeout = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else 10.0
        token = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
        client(port, sys.argv[3], timeout, token)


if __name__ == "__main__":
    main()
