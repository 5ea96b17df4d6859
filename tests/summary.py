"""Adds up the JUnit XML files that `make test` writes, one per suite, and prints one line."""
import sys
import xml.etree.ElementTree as ET

totals = dict(tests=0, failures=0, errors=0, skipped=0)
for path in sys.argv[1:]:
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
passed = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
failed = totals["failures"] + totals["errors"]
print(f"all suites: {passed} passed, {failed} failed, {totals['skipped']} skipped")
sys.exit(1 if failed else 0)
