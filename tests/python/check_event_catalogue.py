#!/usr/bin/python3
"""Every event name the master can log is explained in docs/events.md, and the document explains
no event the code does not have. Usage: check_event_catalogue.py SOURCE_DIR"""
import glob
import os
import re
import sys

root = sys.argv[1]
code = set()
for path in glob.glob(os.path.join(root, "master", "src", "*.[ch]pp")):
    text = open(path, encoding="utf-8").read()
    # `.event = "name"` and `.event = cond ? "a" : "b"`, and the outcomes passed to end_migration.
    for expr in re.findall(r"\.event = ([^,}]*)", text):
        code.update(re.findall(r'"([a-z_]+)"', expr))
    for call in re.findall(r"end_migration\(([^;]*)\)", text):
        code.update(re.findall(r'"(migration_[a-z_]+)"', call))
    # Outcomes renamed on the way (a recovery's terminal records).
    code.update(re.findall(r'outcome = [^;]*?std::string_view\("([a-z_]+)"\)', text))
    code.update(re.findall(r': std::string_view\("([a-z_]+)"\)', text))
doc_text = open(os.path.join(root, "docs", "events.md"), encoding="utf-8").read()
documented = set()
for heading in re.findall(r"^### (.+)$", doc_text, re.M):
    documented.update(re.findall(r"`([a-z_]+)`", heading))

undocumented = sorted(code - documented)
stale = sorted(documented - code)
for name in undocumented:
    print(f"FAIL {name}: logged by the code, missing from docs/events.md")
for name in stale:
    print(f"FAIL {name}: in docs/events.md, but the code never logs it")
print(f"{len(code)} event names in the code, {len(documented)} documented")
sys.exit(1 if undocumented or stale or len(code) < 40 else 0)
