#!/usr/bin/python3
"""Writes every test vector of docs/protocol.md to its own file: the fuzzer's seed corpus.
Usage: seeds_from_docs.py docs/protocol.md OUT_DIR"""
import os
import re
import sys

doc, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
name, lines, count = None, [], 0
for line in open(doc, encoding="utf-8"):
    m = re.match(r"^```vector (\w+)", line)
    if m:
        name, lines = m.group(1), []
    elif name and line.startswith("```"):
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes.fromhex("".join(lines)))
        name, count = None, count + 1
    elif name:
        lines.append(line)
print(f"{count} seeds from {doc}")
