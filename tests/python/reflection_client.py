"""A third-party client: discovers TraceTrack's auth API through gRPC reflection alone (no
generated code), checks that gRPC Login is refused to it (PERMISSION_DENIED,
`caller_not_allowed`: Login answers only the gateway), logs in through the gateway's HTTP API,
then runs WhoAmI -> Logout -> WhoAmI over gRPC with that session and checks that the last call is
refused with UNAUTHENTICATED and the stable reason `unauthenticated` in google.rpc.ErrorInfo.

usage: reflection_client.py HOST:PORT GATEWAY_URL USERNAME PASSWORD
"""

import json
import sys
import urllib.request

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

AUTH = "tracetrack.auth.v1.AuthService"


def main() -> int:
    addr, gateway, username, password = sys.argv[1:5]
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

    def reasons_of(err):
        status = rpc_status.from_call(err)
        reasons = []
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reasons.append((info.domain, info.reason))
        return reasons

    try:
        rpc("Login", {"username": username, "password": password})
        print("gRPC Login answered a caller without the gateway's service token", file=sys.stderr)
        return 1
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err.code()
        assert ("tracetrack", "caller_not_allowed") in reasons_of(err), reasons_of(err)

    request = urllib.request.Request(
        gateway.rstrip("/") + "/api/v1/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    # Straight to the gateway on loopback, whatever proxy the environment names.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as resp:
        token = json.load(resp)["token"]
    assert token, "the gateway's login returned no token"
    me = rpc("WhoAmI", {}, token)
    assert me.user.username == username, me
    rpc("Logout", {}, token)
    try:
        rpc("WhoAmI", {}, token)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.code()
        reasons = reasons_of(err)
        assert ("tracetrack", "unauthenticated") in reasons, reasons
        print(json.dumps({"services": services, "user": me.user.username, "grpc_login": "caller_not_allowed", "after_logout": "UNAUTHENTICATED", "reason": "unauthenticated"}))
        return 0
    print("WhoAmI after Logout succeeded", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
