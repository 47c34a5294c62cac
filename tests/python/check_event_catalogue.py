#!/usr/bin/python3
"""docs/events.md explains exactly the events of the one table that names them (event_table in
master/include/meshmaster/master/event_kind.hpp), and the master's sources log every event of the
table. Usage: check_event_catalogue.py SOURCE_DIR"""
import glob
import os
import re
import sys

root = sys.argv[1]
table_path = os.path.join(root, "master", "include", "meshmaster", "master", "event_kind.hpp")
table_text = open(table_path, encoding="utf-8").read()
entries = re.findall(r'\{event_kind::([a-z_]+), "([a-z_]+)"\}', table_text)
problems = []
for kind, name in entries:
    if kind != name:
        problems.append(f"FAIL event_kind::{kind} is named {name!r} in event_table: give them one name")
table = [name for _, name in entries]
duplicates = sorted({n for n in table if table.count(n) > 1})
problems += [f"FAIL {name}: twice in event_table" for name in duplicates]
table = set(table)

doc_text = open(os.path.join(root, "docs", "events.md"), encoding="utf-8").read()
documented = set()
for heading in re.findall(r"^### (.+)$", doc_text, re.M):
    documented.update(re.findall(r"`([a-z_]+)`", heading))

# What the sources log: event_kind::name, or a literal given to event_record's `event` (checked
# against the table when it compiles).
sources = ""
for path in glob.glob(os.path.join(root, "master", "src", "*.[ch]pp")):
    sources += open(path, encoding="utf-8").read()
used = set(re.findall(r"event_kind::([a-z_]+)", sources))
for expr in re.findall(r"\.event = ([^,}]*)", sources):
    used.update(re.findall(r'"([a-z_]+)"', expr))

problems += [f"FAIL {n}: in event_table, missing from docs/events.md" for n in sorted(table - documented)]
problems += [f"FAIL {n}: in docs/events.md, not in event_table (event_kind.hpp)" for n in sorted(documented - table)]
problems += [f"FAIL {n}: in event_table, but master/src never logs it" for n in sorted(table - used)]
for p in problems:
    print(p)
print(f"{len(table)} events in event_table, {len(documented)} documented, {len(used & table)} logged by master/src")
sys.exit(1 if problems or len(table) < 40 else 0)
