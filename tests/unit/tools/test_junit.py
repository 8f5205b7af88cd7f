"""`check --junit`: one testcase per check, a failure naming each difference, readable by xml.etree."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from dns_server.tools.check import Outcome, report
from dns_server.tools.compare import Difference
from dns_server.tools.expectations import NOERROR, NXDOMAIN, Check
from dns_server.tools.junit import write_junit

SERVICE = Check("service", "2.3.1", "web.shop.svc.cluster.local.", "A", NOERROR, ("10.96.0.5",))
MISSING = Check("nxdomain", "RFC 2308 2.1", "absent.shop.svc.cluster.local.", "A", NXDOMAIN)
WRONG = Difference(MISSING, "RFC 2308 2.1", "wrong rcode", "NOERROR, expected NXDOMAIN", "UDP+TCP")
NO_AA = Difference(MISSING, "RFC 1035 4.1.1", "AA missing", "", "TCP")


def test_one_testcase_per_check_and_a_failure_per_check_with_differences(tmp_path: Path) -> None:
    path = tmp_path / "check.xml"
    write_junit(path, [Outcome(SERVICE, ()), Outcome(MISSING, (WRONG, NO_AA))], 1.5)
    suite = ET.parse(path).getroot()
    assert (suite.tag, suite.get("tests"), suite.get("failures"), suite.get("time")) == ("testsuite", "2", "1", "1.500")
    passed, failed = suite.findall("testcase")
    assert (passed.get("classname"), passed.get("name"), list(passed)) == (
        "2.3.1 service", "web.shop.svc.cluster.local. A", [])
    (failure,) = failed.findall("failure")
    assert failed.get("classname") == "RFC 2308 2.1 nxdomain"
    assert failure.get("message") == "wrong rcode: NOERROR, expected NXDOMAIN; AA missing"
    assert failure.text == ("RFC 2308 2.1 over UDP+TCP: wrong rcode: NOERROR, expected NXDOMAIN\n"
                            "RFC 1035 4.1.1 over TCP: AA missing")


def test_the_table_has_a_line_per_difference_and_a_summary() -> None:
    lines = report([WRONG, NO_AA], 2, "127.0.0.1:53", 0.25).splitlines()
    assert lines[0].split() == ["SECTION", "QUESTION", "OVER", "DIFFERENCE"]
    assert lines[1].split("  ")[0] == "RFC 2308 2.1"
    assert lines[1].endswith("UDP+TCP  wrong rcode: NOERROR, expected NXDOMAIN")
    assert lines[2].endswith("TCP      AA missing")
    assert lines[3] == ("check: 2 checks against 127.0.0.1:53 over UDP and TCP in 0.2 s: "
                        "2 differences (1 AA missing, 1 wrong rcode)")
    assert report([], 2, "127.0.0.1:53", 1.0) == "check: 2 checks against 127.0.0.1:53 over UDP and TCP in 1.0 s: no differences\n"
