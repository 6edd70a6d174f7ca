#!/usr/bin/python3
"""Black-box tests of fee-service: the built binary, reading recipients from a real directory."""
import csv
import io
import unittest

import grpc

from harness import Service, Stack, shclient


class FeesBlackBox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack()
        # Runs even when setUpClass fails part-way: no server is left behind.
        cls.addClassCleanup(cls.stack.close)
        cls.directory = Service(cls.stack, "directory", "directory-service",
                                cls.stack.database("bb_fees_directory")).start()
        admin, dpb2 = shclient.stub("directory", cls.stack.channel(cls.directory.port,
                                                                    "client-directory_admin"))
        # The clerk's court serves King County; the hosting agency is law enforcement.
        for oid, kind in (("bb-provider-1", dpb2.ORGANIZATION_KIND_SERVICE_PROVIDER),
                          ("bb-provider-2", dpb2.ORGANIZATION_KIND_SERVICE_PROVIDER),
                          ("demo-court-king", dpb2.ORGANIZATION_KIND_COURT),
                          ("demo-le-seattle-pd", dpb2.ORGANIZATION_KIND_LAW_ENFORCEMENT_AGENCY)):
            admin.CreateOrganization(dpb2.CreateOrganizationRequest(
                request_id=oid, organization=dpb2.Organization(
                    id=oid, kind=kind, name=oid, county_fips="53033")), timeout=5)
        cls.fees = Service(cls.stack, "fees", "fee-service", cls.stack.database("bb_fees"),
                           [f"--directory_address=localhost:{cls.directory.port}"]).start()
        cls.clerk, cls.pb2 = shclient.stub("fees", cls.stack.channel(cls.fees.port, "client-court_clerk"))


    def test_a_buyer_fee_is_assessed_paid_and_reported(self):
        pb2 = self.pb2
        a = self.clerk.RecordAssessment(pb2.RecordAssessmentRequest(
            request_id="bb-a1", assessment=pb2.Assessment(
                case_number="BB-1", jurisdiction_fips="53033", statute=pb2.STATUTE_PATRONIZING,
                priors=0, ordered_cents=150000, hosting_agency_organization_id="demo-le-seattle-pd",
                offense_date=pb2.Date(year=2026, month=3, day=1),
                assessed_date=pb2.Date(year=2026, month=4, day=1))), timeout=5).assessment
        self.assertEqual(a.scheduled_cents, 150000)
        paid = self.clerk.RecordPayment(pb2.RecordPaymentRequest(
            request_id="bb-p1", assessment_id=a.id, amount_cents=100000,
            paid_date=pb2.Date(year=2026, month=5, day=1)), timeout=5)
        self.assertEqual(sum(d.amount_cents for d in paid.payment.disbursements), 100000)
        accounts = {d.account: d.amount_cents for d in paid.payment.disbursements}
        self.assertEqual(accounts["org:bb-provider-1"] + accounts["org:bb-provider-2"], 50000)
        self.assertEqual(accounts["org:demo-le-seattle-pd"], 48000)
        self.assertEqual(accounts["org:demo-state-commerce"], 2000)
        fiscal, _ = shclient.stub("fees", self.stack.channel(self.fees.port, "client-fiscal"))
        report = fiscal.GetDisbursementReport(pb2.GetDisbursementReportRequest(period=pb2.ReportPeriod(
            **{"from": pb2.Date(year=2026, month=1, day=1), "to": pb2.Date(year=2027, month=1, day=1)})),
            timeout=5)
        self.assertEqual(report.total_cents, 100000)
        rows = list(csv.reader(io.StringIO(report.csv, newline="")))
        self.assertEqual(rows[0], ["account", "recipient_kind", "amount", "amount_cents"])
        self.assertEqual(rows[-1], ["TOTAL", "", "1000.00", "100000"])
        with self.assertRaises(grpc.RpcError) as e:
            self.clerk.RecordPayment(pb2.RecordPaymentRequest(
                request_id="bb-p2", assessment_id=a.id, amount_cents=50001,
                paid_date=pb2.Date(year=2026, month=5, day=2)), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)

    def test_another_courts_clerk_is_refused(self):
        pb2 = self.pb2
        other = self.stack.client_cert("bb-other-clerk", "demo-court-pierce", "court_clerk")
        stub, _ = shclient.stub("fees", self.stack.channel(self.fees.port, other))
        with self.assertRaises(grpc.RpcError) as e:
            stub.RecordAssessment(pb2.RecordAssessmentRequest(request_id="x", assessment=pb2.Assessment(
                court_organization_id="demo-court-king", case_number="X", jurisdiction_fips="53033",
                statute=pb2.STATUTE_PATRONIZING, ordered_cents=150000,
                offense_date=pb2.Date(year=2026, month=3, day=1),
                assessed_date=pb2.Date(year=2026, month=4, day=1))), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

    def test_sigterm_is_graceful(self):
        cls = type(self)
        self.assertEqual(cls.fees.terminate(), 0, cls.fees.tail())
        cls.fees = Service(self.stack, "fees", "fee-service", cls.fees.db_url, cls.fees.extra).start()
        cls.clerk, _ = shclient.stub("fees", self.stack.channel(cls.fees.port, "client-court_clerk"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
