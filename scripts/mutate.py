"""Mutation testing of the pure core against the fast unit tests: a habit, not a CI gate.

mutmut changes one small thing at a time in the modules named (every module of the pure core by
default) and runs the unit tests that cover the changed function against each change.  A change no
test notices is a surviving mutant: behaviour nothing pins down, or a change that does not change
behaviour at all (an equivalent mutant: say why in the review, or simplify the code).  This prints
the score (killed, timeouts included, out of every mutant tested or left without a test) per
module and overall, and every survivor as a diff.

It works in a temporary copy of the tree, where mutmut keeps its `mutants/` directory and state,
so the tree is left as it was (`--keep` leaves the copy, for `mutmut browse` there).  Only
tests/unit runs: the integration tests start processes and take minutes.

    scripts/mutate [--jobs N] [--keep] [MODULE ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.layers import path_of, pure_modules  # noqa: E402  (the architecture's one rule: what is pure)

PURE_CORE = tuple(pure_modules())
TARGET = 0.85  # of the mutants of each module, killed
KILLED = ("killed", "timeout")  # a mutant that makes the tests hang is noticed too
NOT_COUNTED = ("skipped", "not checked", "check was interrupted by user")
RESULT = re.compile(r"^\s+(\S+): (.+)$")


def tracked_entries() -> list[str]:
    """The top-level files and directories git tracks: the unit tests read Corefiles, manifests and bench/."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, text=True, capture_output=True, check=True).stdout
    return sorted({line.split("/", 1)[0] for line in listed.splitlines()})


def mutmut_settings(modules: list[str], entries: list[str]) -> str:
    """The [tool.mutmut] table for the copy's pyproject.toml."""
    paths = ", ".join(f'"{path_of(module).relative_to(REPO)}"' for module in modules)
    copied = ", ".join(f'"{entry}"' for entry in entries if entry not in ("dns_server", "tests"))
    return f"""
[tool.mutmut]
source_paths = ["dns_server"]
only_mutate = [{paths}]
also_copy = [{copied}]
pytest_add_cli_args_test_selection = ["tests/unit"]
pytest_add_cli_args = ["-p", "no:cacheprovider"]
use_git_change_detection = false
"""


def mutmut(work: Path, *args: str, capture: bool = True) -> str:
    result = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=work, text=True,
                            stdout=subprocess.PIPE if capture else None, check=True)
    return result.stdout or ""


def module_of(mutant: str, modules: list[str]) -> str:
    for module in sorted(modules, key=len, reverse=True):
        if mutant.startswith(f"dns_server.{module}."):
            return module
    raise ValueError(f"{mutant}: not a mutant of {', '.join(modules)}")


def report(work: Path, modules: list[str]) -> None:
    statuses: dict[str, Counter[str]] = {module: Counter() for module in modules}
    survivors: dict[str, list[str]] = {module: [] for module in modules}
    for line in mutmut(work, "results", "--all", "true").splitlines():
        match = RESULT.match(line)
        if not match:
            continue
        name, status = match.groups()
        module = module_of(name, modules)
        statuses[module][status] += 1
        if status not in KILLED and status not in NOT_COUNTED:
            survivors[module].append(name)

    print("\nmutation score (killed of those tested or left without a test)")
    total = Counter[str]()
    for module in modules:
        total.update(statuses[module])
        print(score_line(module, statuses[module]))
    print(score_line("overall", total))
    for module in modules:
        for name in survivors[module]:
            print(f"\n# {name}")
            print(mutmut(work, "show", name).split("\n", 1)[1].rstrip())


def score_line(what: str, counts: Counter[str]) -> str:
    counted = sum(n for status, n in counts.items() if status not in NOT_COUNTED)
    killed = sum(counts[status] for status in KILLED)
    if not counted:
        return f"  {what:10} no mutants"
    score = killed / counted
    others = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if status not in KILLED)
    mark = "" if score >= TARGET else f"  (below {TARGET:.0%})"
    return f"  {what:10} {score:6.1%}  {killed}/{counted} killed{'; ' + others if others else ''}{mark}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"default: {' '.join(PURE_CORE)}")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="test processes at once")
    parser.add_argument("--keep", action="store_true", help="keep the working copy and print where it is")
    args = parser.parse_args()
    modules = args.modules or list(PURE_CORE)
    missing = [module for module in modules if not path_of(module).is_file()]
    if missing:
        parser.error(f"no module dns_server.{missing[0]} (name modules dotted, as `protocol.wire`)")

    work = Path(tempfile.mkdtemp(prefix="dns-server-mutate-"))
    try:
        entries = tracked_entries()
        for name in entries:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
            else:
                shutil.copy2(source, work / name)
        with (work / "pyproject.toml").open("a") as pyproject:
            pyproject.write(mutmut_settings(modules, entries))
        mutmut(work, "run", "--max-children", str(args.jobs), capture=False)
        report(work, modules)
    finally:
        if args.keep:
            print(f"\nmutmut's working copy: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
