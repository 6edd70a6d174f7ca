#!/usr/bin/python3
"""Black-box tests of beds-service: two real processes on one database, driven over mTLS."""
import threading
import time
import unittest

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from harness import Service, Stack, shclient


class BedsBlackBox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack()
        # Runs even when setUpClass fails part-way: no server is left behind.
        cls.addClassCleanup(cls.stack.close)
        # Facility owners are checked against a real directory.
        cls.directory = Service(cls.stack, "directory", "directory-service",
                                cls.stack.database("bb_beds_directory")).start()
        dir_admin, dpb2 = shclient.stub("directory", cls.stack.channel(cls.directory.port,
                                                                        "client-directory_admin"))
        dir_admin.CreateOrganization(dpb2.CreateOrganizationRequest(
            request_id="bb-provider", organization=dpb2.Organization(
                id="demo-provider-001", kind=dpb2.ORGANIZATION_KIND_SERVICE_PROVIDER,
                name="Black-box provider")), timeout=5)
        cls.beds_args = [f"--directory_address=localhost:{cls.directory.port}"]
        db = cls.stack.database("bb_beds")
        cls.one = Service(cls.stack, "beds", "beds-service", db, cls.beds_args).start()
        cls.two = Service(cls.stack, "beds", "beds-service", db, cls.beds_args).start()
        cls.admin, cls.pb2 = shclient.stub("beds", cls.stack.channel(cls.one.port, "client-directory_admin"))


    def facility(self, fid, beds, occupied):
        pb2 = self.pb2
        f = pb2.Facility(id=fid, organization_id="demo-provider-001", name=fid,
                         placement_type=pb2.PLACEMENT_TYPE_HOPE_CENTER, county_fips="53033",
                         latitude=47.61, longitude=-122.33, minimum_age=12, maximum_age=17,
                         bed_types=[pb2.BedTypeCapacity(bed_type=pb2.BED_TYPE_GENERAL,
                                                        licensed_capacity=beds)])
        self.admin.CreateFacility(pb2.CreateFacilityRequest(request_id=f"c-{fid}", facility=f), timeout=5)
        now = Timestamp()
        now.GetCurrentTime()
        provider, _ = shclient.stub("beds", self.stack.channel(self.one.port, "client-provider"))
        provider.ReportCensus(pb2.ReportCensusRequest(
            request_id=f"census-{fid}", facility_id=fid, confirmed_time=now,
            entries=[pb2.CensusEntry(bed_type=pb2.BED_TYPE_GENERAL, occupied=occupied)]), timeout=5)

    def test_fifty_holds_over_two_processes_for_the_last_bed(self):
        pb2 = self.pb2
        self.facility("bb-last-bed", 4, 3)
        # Only the referral service holds beds (its certificate), for the referrals it routes.
        stubs = [shclient.stub("beds", self.stack.channel(s.port, "referrals"))[0]
                 for s in (self.one, self.two)]
        results = []
        lock = threading.Lock()

        def hold(i):
            try:
                stubs[i % 2].HoldBed(pb2.HoldBedRequest(
                    request_id=f"race-{i}", facility_id="bb-last-bed", bed_type=pb2.BED_TYPE_GENERAL,
                    referral_id=f"ref-{i}", ttl_seconds=600), timeout=20)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
            with lock:
                results.append(code)

        threads = [threading.Thread(target=hold, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results.count("OK"), 1, results)
        self.assertEqual(results.count("FAILED_PRECONDITION"), 49, results)
        got = self.admin.GetFacility(pb2.GetFacilityRequest(id="bb-last-bed"), timeout=5)
        self.assertEqual(got.beds[0].held, 1)
        self.assertEqual(got.beds[0].available_beds, 0)

    def test_a_watch_on_one_process_sees_a_hold_made_on_the_other(self):
        pb2 = self.pb2
        self.facility("bb-watched", 5, 0)
        watcher, _ = shclient.stub("beds", self.stack.channel(self.one.port, "client-child_welfare"))
        stream = watcher.WatchAvailability(pb2.WatchAvailabilityRequest(county_fips="53033"), timeout=20)
        time.sleep(0.5)
        other, _ = shclient.stub("beds", self.stack.channel(self.two.port, "referrals"))
        other.HoldBed(pb2.HoldBedRequest(request_id="w-1", facility_id="bb-watched",
                                         bed_type=pb2.BED_TYPE_GENERAL, referral_id="ref-w"), timeout=5)
        seen = None
        for event in stream:
            if event.availability.facility_id == "bb-watched" and event.reason == "hold":
                seen = event
                stream.cancel()
                break
        self.assertIsNotNone(seen, "the hold never reached the watcher")
        self.assertEqual(seen.availability.held, 1)
        self.assertTrue(seen.cursor)

    def test_a_facility_owner_must_be_a_provider_in_the_directory(self):
        pb2 = self.pb2
        f = pb2.Facility(id="bb-ghost", organization_id="no-such-org", name="x",
                         placement_type=pb2.PLACEMENT_TYPE_HOPE_CENTER, county_fips="53033",
                         latitude=47.6, longitude=-122.3, minimum_age=12, maximum_age=17,
                         bed_types=[pb2.BedTypeCapacity(bed_type=pb2.BED_TYPE_GENERAL, licensed_capacity=1)])
        with self.assertRaises(grpc.RpcError) as e:
            self.admin.CreateFacility(pb2.CreateFacilityRequest(request_id="ghost", facility=f), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("not in the directory", e.exception.details())

    def test_sigterm_is_graceful(self):
        cls = type(self)
        self.assertEqual(cls.two.terminate(), 0, cls.two.tail())
        cls.two = Service(self.stack, "beds", "beds-service", cls.one.db_url, cls.beds_args).start()


if __name__ == "__main__":
    unittest.main(verbosity=2)
