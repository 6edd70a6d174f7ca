"""A small SafeHarbor gRPC client over mTLS, for scripts and black-box tests.

Uses the Python stubs the build generates under <build>/py (from protos/ and third_party/).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(BUILD_DIR, "py"))

import grpc  # noqa: E402

import json  # noqa: E402

# The one table of services (services/services.json): name -> its entry.
with open(os.path.join(ROOT, "services", "services.json")) as _f:
    SPEC = {s["name"]: s for s in json.load(_f)["services"]}


def _modules(entry):
    package, cls = entry["grpc_service"].rsplit(".", 1)
    return f"{package}.{entry['name']}_pb2", f"{package}.{entry['name']}_pb2_grpc", cls


# service name -> (pb2 module, grpc module, service class name, default port)
SERVICES = {name: (*_modules(e), e["grpc_port"]) for name, e in SPEC.items()}


def _module(name):
    __import__(name)
    return sys.modules[name]


def channel(port, certs_dir, cert_name, host="localhost"):
    """An mTLS channel presenting <certs_dir>/<cert_name>.crt (no client cert if cert_name is None)."""
    with open(os.path.join(certs_dir, "ca.crt"), "rb") as f:
        ca = f.read()
    key = chain = None
    if cert_name:
        with open(os.path.join(certs_dir, cert_name + ".key"), "rb") as f:
            key = f.read()
        with open(os.path.join(certs_dir, cert_name + ".crt"), "rb") as f:
            chain = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=chain)
    return grpc.secure_channel(f"{host}:{port}", creds)


def stub(service, chan):
    pb2_name, grpc_name, cls, _ = SERVICES[service]
    return getattr(_module(grpc_name), cls + "Stub")(chan), _module(pb2_name)


def request_class(service, method):
    pb2_name, _, cls, _ = SERVICES[service]
    pb2 = _module(pb2_name)
    m = pb2.DESCRIPTOR.services_by_name[cls].methods_by_name.get(method)
    if m is None:
        names = sorted(pb2.DESCRIPTOR.services_by_name[cls].methods_by_name)
        raise SystemExit(f"unknown method {method}; {service} has: {', '.join(names)}")
    return getattr(pb2, m.input_type.name)


def is_server_streaming(service, method):
    pb2_name, _, cls, _ = SERVICES[service]
    m = _module(pb2_name).DESCRIPTOR.services_by_name[cls].methods_by_name[method]
    return m.server_streaming


def _third_party(relpath, name):
    """Loads a generated third-party *_pb2 module by path: its package (grpc.*) would collide
    with grpcio's own 'grpc' package."""
    import importlib.util
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(BUILD_DIR, "py", relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules[name] = mod
    return mod


def health(chan, timeout=3.0):
    """grpc.health.v1 Check; returns the status name (SERVING, NOT_SERVING, ...)."""
    pb2 = _third_party("grpc/health/v1/health_pb2.py", "shclient_health_pb2")
    check = chan.unary_unary("/grpc.health.v1.Health/Check",
                             request_serializer=pb2.HealthCheckRequest.SerializeToString,
                             response_deserializer=pb2.HealthCheckResponse.FromString)
    resp = check(pb2.HealthCheckRequest(), timeout=timeout)
    return pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def reflection_services(chan, timeout=3.0):
    """Service names listed by server reflection (grpc.reflection.v1alpha)."""
    pb2 = _third_party("grpc/reflection/v1alpha/reflection_pb2.py", "shclient_reflection_pb2")
    call = chan.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                              request_serializer=pb2.ServerReflectionRequest.SerializeToString,
                              response_deserializer=pb2.ServerReflectionResponse.FromString)
    responses = call(iter([pb2.ServerReflectionRequest(list_services="")]), timeout=timeout)
    names = []
    for r in responses:
        names.extend(s.name for s in r.list_services_response.service)
    return sorted(names)
