#!/usr/bin/python3
"""Turns the C++ snippet of README.md into a doctest case, so the README's example is a test.
Lines starting with #include or `using` stay at file scope; the rest becomes the test's body.
Usage: readme_example.py README.md OUT.cpp"""
import re
import sys

readme, out = sys.argv[1], sys.argv[2]
blocks = re.findall(r"^```cpp\n(.*?)^```", open(readme, encoding="utf-8").read(), re.S | re.M)
if len(blocks) != 1:
    raise SystemExit(f"{readme}: expected exactly one ```cpp block, found {len(blocks)}")
prelude, body = [], []
for line in blocks[0].splitlines():
    (prelude if line.startswith(("#include", "using ")) else body).append(line)
with open(out, "w", encoding="utf-8") as f:
    f.write("// Generated from README.md by tests/unit/readme_example.py: edit the README, not this.\n")
    f.write("#undef NDEBUG\n#include <doctest/doctest.h>\n")
    f.write("\n".join(prelude) + "\n\n")
    f.write('TEST_CASE("the README example runs") {\n')
    f.write("\n".join("    " + line if line else "" for line in body) + "\n}\n")
