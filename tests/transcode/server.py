#!/usr/bin/python3
"""The Users service of tests/transcode/users.proto for tests/transcode.rs and
loadtest/bench/transcode-cost, with Debian's python3-grpcio. Its message classes
come from the compiled descriptor set the gateway reads too (no generated code).

    server.py DESCRIPTOR_SET PORT

Prints "listening" once it serves.
"""

import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

KARMA = 9007199254740993  # over 2^53: proto3 JSON writes int64 as a string


def main(descriptor_set, port):
    files = descriptor_pb2.FileDescriptorSet()
    with open(descriptor_set, "rb") as f:
        files.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    factory = message_factory.MessageFactory(pool)

    def cls(name):
        return factory.GetPrototype(pool.FindMessageTypeByName("portico.test." + name))

    User, CallCount = cls("User"), cls("CallCount")
    calls = [0]
    lock = threading.Lock()

    def counted(fn):
        def wrapper(request, context):
            with lock:
                calls[0] += 1
            return fn(request, context)
        return wrapper

    def tenant(context):
        return dict(context.invocation_metadata()).get("x-tenant", "")

    def get_user(request, context):
        if request.id == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "user missing not found")
        if request.id == "denied":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours: 100% private")
        name = "user " + request.id + (" (verbose)" if request.verbose else "")
        return User(id=request.id, display_name=name, karma=KARMA, role=request.min_role,
                    tags=list(request.fields), tenant=tenant(context))

    def create_user(request, context):
        if not request.user.display_name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "display_name is required")
        user = User()
        user.CopyFrom(request.user)
        user.id = request.request_id
        user.tenant = tenant(context)
        return user

    def update_user(request, context):
        user = User()
        user.CopyFrom(request)
        user.tenant = tenant(context)
        return user

    def list_users(request, context):
        with lock:
            calls[0] += 1
        for i in range(1, request.count + 1):
            yield User(id=str(i), display_name="user %d" % i)
        if request.fail:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota spent after %d" % request.count)

    def count_calls(request, context):
        with lock:
            return CallCount(calls=calls[0])

    methods = {
        "GetUser": (counted(get_user), "GetUserRequest", "User"),
        "CreateUser": (counted(create_user), "CreateUserRequest", "User"),
        "UpdateUser": (counted(update_user), "User", "User"),
        "CountCalls": (count_calls, "CountCallsRequest", "CallCount"),
        "Ping": (count_calls, "CountCallsRequest", "CallCount"),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=cls(req).FromString,
            response_serializer=cls(resp).SerializeToString)
        for name, (fn, req, resp) in methods.items()
    }
    handlers["ListUsers"] = grpc.unary_stream_rpc_method_handler(
        list_users, request_deserializer=cls("ListUsersRequest").FromString,
        response_serializer=User.SerializeToString)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("portico.test.Users", handlers),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
