#!/usr/bin/python3
"""Black-box tests of the limits every deployment has (issue 11, "Trust boundaries"): the built
binaries over mTLS. Redis with a password and authenticated cached values; development mode
refused on anything but loopback; per-method request size limits; per-organization call rate and
open-stream limits; watch streams with a maximum age; role "service" only for the services."""
import os
import re
import subprocess
import unittest
import urllib.request

import grpc

from harness import BUILD_DIR, Service, Stack, shclient, wait_for

SEATTLE = {"latitude": 47.6062, "longitude": -122.3321}


def metric(svc, name, **labels):
    """The value of one series (0 when absent) from the service's /metrics."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics").read().decode()
    total = 0.0
    for line in body.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def code_of(call):
    try:
        call()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


class TrustLimitsBlackBox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack()
        cls.addClassCleanup(cls.stack.close)
        # Without the in-process level: these tests observe what is read from Redis.
        cls.directory = Service(cls.stack, "directory", "directory-service",
                                cls.stack.database("bb_limits_directory"),
                                ["--search_local_cache_entries=0"]).start()
        cls.admin, cls.dpb2 = shclient.stub("directory", cls.stack.channel(
            cls.directory.port, "client-directory_admin"))
        pb2 = cls.dpb2
        cls.admin.CreateOrganization(pb2.CreateOrganizationRequest(
            request_id="lim-org", organization=pb2.Organization(
                id="demo-provider-001", kind=pb2.ORGANIZATION_KIND_SERVICE_PROVIDER,
                name="Limits provider", county_fips="53033",
                locations=[pb2.Location(id="main", latitude=47.61, longitude=-122.33,
                                        county_fips="53033")])), timeout=5)
        cls.admin.CreateService(pb2.CreateServiceRequest(request_id="lim-svc", service=pb2.Service(
            id="lim-shelter", organization_id="demo-provider-001", name="Shelter",
            status=pb2.SERVICE_STATUS_ACTIVE, category=pb2.SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER,
            minimum_age=12, maximum_age=17, languages=["en"], service_area_county_fips=["53033"],
            location_id="main", accepting_referrals=True, csec_specialized=True,
            schedule=pb2.Schedule(open_24_7=True, time_zone="America/Los_Angeles"))), timeout=5)

    def redis_cli(self, *args, password=True):
        cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.stack.redis_port)]
        if password:
            cmd += ["--no-auth-warning", "-a", self.stack.redis_password]
        return subprocess.run(cmd + list(args), capture_output=True, text=True).stdout.strip()

    def search(self):
        officer, pb2 = shclient.stub("directory", self.stack.channel(self.directory.port,
                                                                      "client-law_enforcement"))
        resp = officer.SearchServices(pb2.SearchServicesRequest(
            near=pb2.GeoPoint(**SEATTLE), radius_meters=10000), timeout=5)
        return [m.service.id for m in resp.matches]

    def test_redis_needs_its_password_and_forged_cache_values_are_ignored(self):
        # Without the password Redis answers nothing.
        self.assertIn("NOAUTH", self.redis_cli("get", "x", password=False))
        self.assertEqual(self.search(), ["lim-shelter"])
        hits = metric(self.directory, "safeharbor_cache_requests_total", result="hit")
        self.assertEqual(self.search(), ["lim-shelter"])
        self.assertEqual(metric(self.directory, "safeharbor_cache_requests_total", result="hit"),
                         hits + 1)
        # Someone who reached Redis (even with its password) but has no cache key writes an
        # answer of their own over every cached search: it fails the check and is not served.
        keys = [k for k in self.redis_cli("--scan", "--pattern", "*directory_search:*").split()
                if not k.endswith(":gen")]
        self.assertTrue(keys)
        _, dpb2 = shclient.stub("directory", self.stack.channel(self.directory.port, None))
        forged = dpb2.SearchServicesResponse(matches=[dpb2.ServiceMatch(
            service=dpb2.Service(id="forged-service", name="Come here"))]).SerializeToString()
        for k in keys:
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.stack.redis_port),
                            "--no-auth-warning", "-a", self.stack.redis_password, "-x", "set", k],
                           input=b"\0" * 32 + forged, check=True, capture_output=True)
        rejected = metric(self.directory, "safeharbor_cache_requests_total", result="rejected")
        self.assertEqual(self.search(), ["lim-shelter"])
        self.assertEqual(metric(self.directory, "safeharbor_cache_requests_total",
                                result="rejected"), rejected + 1)
        print(f"\nforged cache values: {len(keys)} written, "
              f"{metric(self.directory, 'safeharbor_cache_requests_total', result='rejected'):.0f} "
              "rejected, 0 served", flush=True)

    def test_a_wrong_redis_password_degrades_to_postgres(self):
        # The harness gives the right password in the environment; a flag wins over it.
        svc = Service(self.stack, "directory", "directory-service", self.directory.db_url,
                      ["--redis_password=wrong"]).start()
        officer, pb2 = shclient.stub("directory", self.stack.channel(svc.port, "client-law_enforcement"))
        for _ in range(3):
            resp = officer.SearchServices(pb2.SearchServicesRequest(
                near=pb2.GeoPoint(**SEATTLE), radius_meters=10000), timeout=5)
            self.assertEqual([m.service.id for m in resp.matches], ["lim-shelter"])
        self.assertEqual(metric(svc, "safeharbor_redis_up"), 0)
        self.assertGreaterEqual(metric(svc, "safeharbor_redis_errors_total"), 1)
        self.assertIn("redis refused the password", svc.tail())
        svc.terminate()

    def test_dev_mode_refuses_any_listen_address_but_loopback(self):
        binary = os.path.join(BUILD_DIR, "services", "directory", "directory-service")
        out = subprocess.run([binary, "--insecure_dev_mode", "--listen_host=0.0.0.0",
                              "--grpc_port=0", "--metrics_port=-1",
                              f"--postgres_url={self.directory.db_url}",
                              f"--redis_url=redis://127.0.0.1:{self.stack.redis_port}"],
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("only on loopback", out.stdout + out.stderr)

    def test_request_size_limits_per_method(self):
        pb2 = self.dpb2
        # Under the server's receive limit but over the method's: refused before validation.
        code, details = code_of(lambda: self.admin.SearchServices(pb2.SearchServicesRequest(
            county_fips="5" * 100_000), timeout=10))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("SearchServices accepts at most 65536", details)
        # ImportHsds alone takes large documents, up to 32 MiB; gRPC refuses anything larger.
        code, details = code_of(lambda: self.admin.ImportHsds(pb2.ImportHsdsRequest(
            request_id="too-big", hsds_json=b" " * (33 << 20)), timeout=60))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        code, details = code_of(lambda: self.admin.ImportHsds(pb2.ImportHsdsRequest(
            request_id="big-but-allowed", hsds_json=b"[" + b" " * (1 << 20) + b"]"), timeout=60))
        self.assertIn(code, (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), details)
        self.assertNotIn("accepts at most", details)  # past the size limits, to the content

    def test_per_organization_call_rate(self):
        svc = Service(self.stack, "directory", "directory-service", self.directory.db_url,
                      ["--org_calls_per_second=0.01", "--org_call_burst=5"]).start()
        stub = lambda cert: shclient.stub("directory", self.stack.channel(svc.port, cert))  # noqa
        officer, pb2 = stub("client-law_enforcement")
        codes = [code_of(lambda: officer.ListCounties(pb2.ListCountiesRequest(), timeout=5))
                 for _ in range(8)]
        self.assertEqual([c for c, _ in codes[:5]], [grpc.StatusCode.OK] * 5)
        self.assertEqual([c for c, _ in codes[5:]], [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3)
        self.assertIn("call rate", codes[5][1])
        # Another organization is not affected.
        welfare, _ = stub("client-child_welfare")
        welfare.ListCounties(pb2.ListCountiesRequest(), timeout=5)
        self.assertEqual(metric(svc, "safeharbor_quota_refused_total", limit="call_rate",
                                caller_role="law_enforcement"), 3)
        print(f"\ncall rate: 5 admitted, 3 refused; other organization admitted", flush=True)
        svc.terminate()

    def test_open_streams_per_organization_and_their_maximum_age(self):
        beds = Service(self.stack, "beds", "beds-service", self.stack.database("bb_limits_beds"),
                       [f"--directory_address=localhost:{self.directory.port}",
                        "--org_max_open_streams=2", "--watch_max_stream_age_s=3"]).start()
        watcher, pb2 = shclient.stub("beds", self.stack.channel(beds.port, "client-child_welfare"))
        req = pb2.WatchAvailabilityRequest(county_fips="53033")
        first = watcher.WatchAvailability(req, timeout=30)
        second = watcher.WatchAvailability(req, timeout=30)
        wait_for(lambda: metric(beds, "safeharbor_beds_watchers") == 2, what="two watchers")
        third = watcher.WatchAvailability(req, timeout=30)
        code, details = code_of(lambda: next(third))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("2 open streams", details)
        # Another organization still opens its own.
        other, _ = shclient.stub("beds", self.stack.channel(beds.port, "client-law_enforcement"))
        theirs = other.WatchAvailability(req, timeout=30)
        wait_for(lambda: metric(beds, "safeharbor_beds_watchers") == 3, what="their watcher")
        self.assertEqual(metric(beds, "safeharbor_quota_refused_total", limit="open_streams",
                                caller_role="child_welfare"), 1)
        # A closed stream gives its slot back.
        first.cancel()
        wait_for(lambda: metric(beds, "safeharbor_beds_watchers") == 2, what="first closed")
        again = watcher.WatchAvailability(req, timeout=30)
        wait_for(lambda: metric(beds, "safeharbor_beds_watchers") == 3, what="reopened")
        # After its maximum age the server ends a stream; the client resumes with its cursor.
        for stream in (second, again, theirs):
            code, details = code_of(lambda: next(stream))
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
            self.assertIn("maximum age", details)
            self.assertIn("resume with cursor", details)
        cursor = re.search(r"resume with cursor (\d+)", details).group(1)
        resumed = watcher.WatchAvailability(pb2.WatchAvailabilityRequest(
            county_fips="53033", cursor=cursor), timeout=1)
        code, _ = code_of(lambda: next(resumed))
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)  # open, nothing new yet
        beds.terminate()

    def test_role_service_only_for_the_known_services(self):
        impostor = self.stack.client_cert("bb-impostor", "some-county-it", "service")
        stub, pb2 = shclient.stub("directory", self.stack.channel(self.directory.port, impostor))
        code, details = code_of(lambda: stub.ListCounties(pb2.ListCountiesRequest(), timeout=5))
        self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("own identities", details)
        # The services' own certificates are trusted as peers.
        own, _ = shclient.stub("directory", self.stack.channel(self.directory.port, "referrals"))
        self.assertEqual(len(own.ListCounties(pb2.ListCountiesRequest(), timeout=5).counties), 39)


if __name__ == "__main__":
    unittest.main(verbosity=2)
