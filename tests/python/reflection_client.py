"""A third-party client: discovers TraceTrack's auth API through gRPC reflection alone (no
generated code), then runs Login -> WhoAmI -> Logout -> WhoAmI and checks that the last call is
refused with UNAUTHENTICATED and the stable reason `unauthenticated` in google.rpc.ErrorInfo.

usage: reflection_client.py HOST:PORT USERNAME PASSWORD
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

AUTH = "tracetrack.auth.v1.AuthService"


def main() -> int:
    addr, username, password = sys.argv[1:4]
    channel = grpc.insecure_channel(addr)
    reflection = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(reflection.get_services())
    for wanted in (AUTH, "tracetrack.auth.v1.UserAdminService", "grpc.health.v1.Health"):
        assert wanted in services, f"{wanted} not listed by reflection: {services}"
    pool = descriptor_pool.DescriptorPool(reflection)
    service = pool.FindServiceByName(AUTH)

    def rpc(name, fields, token=None):
        method = service.FindMethodByName(name)
        req_cls = message_factory.GetMessageClass(method.input_type)
        resp_cls = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{AUTH}/{name}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        metadata = [("authorization", f"Bearer {token}")] if token else None
        return call(req_cls(**fields), metadata=metadata, timeout=10)

    login = rpc("Login", {"username": username, "password": password})
    assert login.token, "Login returned no token"
    me = rpc("WhoAmI", {}, login.token)
    assert me.user.username == username, me
    rpc("Logout", {}, login.token)
    try:
        rpc("WhoAmI", {}, login.token)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.code()
        status = rpc_status.from_call(err)
        reasons = []
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reasons.append((info.domain, info.reason))
        assert ("tracetrack", "unauthenticated") in reasons, reasons
        print(json.dumps({"services": services, "user": me.user.username, "after_logout": "UNAUTHENTICATED", "reason": "unauthenticated"}))
        return 0
    print("WhoAmI after Logout succeeded", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
