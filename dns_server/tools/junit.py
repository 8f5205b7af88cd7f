"""`check`'s results as JUnit XML for CI: one testcase per check, a failure listing its differences.

The JUnit XML that Jenkins, GitLab and GitHub's test reporters read: one `testsuite`, each
`testcase` named by its question, its `classname` the specification's section and kind of check.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Protocol, Sequence

from dns_server.tools.compare import Difference
from dns_server.tools.expectations import Check

SUITE = "dns-server check"


class Result(Protocol):
    @property
    def check(self) -> Check: ...

    @property
    def differences(self) -> tuple[Difference, ...]: ...


def junit_xml(results: Sequence[Result], seconds: float) -> ET.ElementTree:
    failures = sum(1 for result in results if result.differences)
    suite = ET.Element("testsuite", name=SUITE, tests=str(len(results)), failures=str(failures), errors="0",
                       time=f"{seconds:.3f}")
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=f"{result.check.section} {result.check.kind}",
                             name=result.check.title)
        if result.differences:
            failure = ET.SubElement(case, "failure", message="; ".join(str(d) for d in result.differences))
            failure.text = "\n".join(f"{d.cites} over {d.transport}: {d}" for d in result.differences)
    return ET.ElementTree(suite)


def write_junit(path: Path, results: Sequence[Result], seconds: float) -> None:
    junit_xml(results, seconds).write(path, encoding="utf-8", xml_declaration=True)
