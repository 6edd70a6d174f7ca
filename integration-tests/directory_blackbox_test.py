#!/usr/bin/python3
"""Black-box tests of directory-service: the built binary driven over mTLS from Python."""
import subprocess
import unittest
import urllib.request

import grpc

from harness import Service, Stack, shclient

SEATTLE = {"latitude": 47.6062, "longitude": -122.3321}


def provider(pb2, oid, lat, lng):
    return pb2.Organization(
        id=oid, kind=pb2.ORGANIZATION_KIND_SERVICE_PROVIDER, name=f"Black-box {oid}",
        county_fips="53033",
        locations=[pb2.Location(id="main", latitude=lat, longitude=lng, county_fips="53033")])


def shelter(pb2, sid, org):
    return pb2.Service(
        id=sid, organization_id=org, name="Shelter", status=pb2.SERVICE_STATUS_ACTIVE,
        category=pb2.SERVICE_CATEGORY_EMERGENCY_YOUTH_SHELTER, minimum_age=12, maximum_age=17,
        languages=["en"], service_area_county_fips=["53033"], location_id="main",
        accepting_referrals=True, csec_specialized=True,
        schedule=pb2.Schedule(open_24_7=True, time_zone="America/Los_Angeles"))


class DirectoryBlackBox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack()
        # Runs even when setUpClass fails part-way: no server is left behind.
        cls.addClassCleanup(cls.stack.close)
        cls.db = cls.stack.database("bb_directory")
        cls.svc = Service(cls.stack, "directory", "directory-service", cls.db).start()
        cls.admin, cls.pb2 = shclient.stub("directory", cls.stack.channel(cls.svc.port,
                                                                            "client-directory_admin"))
        cls.officer, _ = shclient.stub("directory", cls.stack.channel(cls.svc.port,
                                                                       "client-law_enforcement"))


    def test_health_and_reflection(self):
        chan = self.stack.channel(self.svc.port, "client-auditor")
        self.assertEqual(shclient.health(chan), "SERVING")
        self.assertIn("safeharbor.directory.v1.DirectoryService", shclient.reflection_services(chan))

    def test_metrics_pass_promtool(self):
        self.admin.ListCounties(self.pb2.ListCountiesRequest(), timeout=5)
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.svc.metrics_port}/metrics").read()
        check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        text = body.decode()
        self.assertIn('grpc_server_handled_total{grpc_code="OK",grpc_method="ListCounties"', text)
        self.assertIn("grpc_server_handling_seconds_bucket", text)
        self.assertIn("process_resident_memory_bytes", text)

    def test_officer_finds_what_the_admin_registered(self):
        pb2 = self.pb2
        self.admin.CreateOrganization(pb2.CreateOrganizationRequest(
            request_id="bb-org-1", organization=provider(pb2, "bb-prov-1", 47.61, -122.33)), timeout=5)
        self.admin.CreateService(pb2.CreateServiceRequest(
            request_id="bb-svc-1", service=shelter(pb2, "bb-shelter-1", "bb-prov-1")), timeout=5)
        resp = self.officer.SearchServices(pb2.SearchServicesRequest(
            near=pb2.GeoPoint(**SEATTLE), radius_meters=10000, csec_specialized_only=True), timeout=5)
        self.assertIn("bb-shelter-1", [m.service.id for m in resp.matches])
        self.assertEqual(len(self.admin.ListCounties(pb2.ListCountiesRequest(), timeout=5).counties), 39)

    def test_roles_and_ownership(self):
        pb2 = self.pb2
        with self.assertRaises(grpc.RpcError) as e:
            self.officer.CreateOrganization(pb2.CreateOrganizationRequest(
                request_id="x", organization=provider(pb2, "bb-nope", 47.6, -122.3)), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.admin.CreateOrganization(pb2.CreateOrganizationRequest(
            request_id="bb-org-2", organization=provider(pb2, "bb-prov-2", 47.62, -122.33)), timeout=5)
        other = self.stack.client_cert("bb-other-provider", "bb-prov-other", "provider")
        stub, _ = shclient.stub("directory", self.stack.channel(self.svc.port, other))
        with self.assertRaises(grpc.RpcError) as e:
            stub.CreateService(pb2.CreateServiceRequest(
                request_id="y", service=shelter(pb2, "bb-shelter-2", "bb-prov-2")), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

    def test_call_without_client_certificate_is_refused(self):
        stub, _ = shclient.stub("directory", self.stack.channel(self.svc.port, None))
        with self.assertRaises(grpc.RpcError) as e:
            stub.ListCounties(self.pb2.ListCountiesRequest(), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_invalid_input_names_the_field(self):
        org = provider(self.pb2, "bb-bad", 47.6, -122.3)
        org.locations[0].latitude = 200
        with self.assertRaises(grpc.RpcError) as e:
            self.admin.CreateOrganization(self.pb2.CreateOrganizationRequest(
                request_id="bb-bad", organization=org), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("organization.locations[0].latitude", e.exception.details())

    def test_sigterm_is_graceful_and_data_survives_restart(self):
        pb2 = self.pb2
        self.admin.CreateOrganization(pb2.CreateOrganizationRequest(
            request_id="bb-org-3", organization=provider(pb2, "bb-prov-3", 47.63, -122.33)), timeout=5)
        cls = type(self)
        self.assertEqual(cls.svc.terminate(), 0, cls.svc.tail())
        cls.svc = Service(self.stack, "directory", "directory-service", self.db).start()
        cls.admin, _ = shclient.stub("directory", self.stack.channel(cls.svc.port,
                                                                       "client-directory_admin"))
        cls.officer, _ = shclient.stub("directory", self.stack.channel(cls.svc.port,
                                                                         "client-law_enforcement"))
        got = cls.admin.GetOrganization(pb2.GetOrganizationRequest(id="bb-prov-3"), timeout=5)
        self.assertEqual(got.organization.name, "Black-box bb-prov-3")


if __name__ == "__main__":
    unittest.main(verbosity=2)
