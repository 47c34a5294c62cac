#!/usr/bin/python3
"""Turns the C++ snippets of README.md into code the build compiles, so the README cannot rot.

A ```cpp block right after `<!-- test: NAME -->` becomes a doctest case: lines starting with
#include or `using` stay at file scope, the rest is the test's body. A block right after
`<!-- program: NAME -->` is a whole program, compiled as it is.

Usage: readme_example.py README.md test|program NAME OUT.cpp"""
import re
import sys

readme, kind, name, out = sys.argv[1:5]
text = open(readme, encoding="utf-8").read()
blocks = re.findall(r"^<!-- (test|program): (\S+) -->\n```cpp\n(.*?)^```", text, re.S | re.M)
code = [body for k, n, body in blocks if k == kind and n == name]
if len(code) != 1:
    raise SystemExit(f"{readme}: expected one ```cpp block marked <!-- {kind}: {name} -->, found {len(code)}")
with open(out, "w", encoding="utf-8") as f:
    f.write("// Generated from README.md by tests/unit/readme_example.py: edit the README, not this.\n")
    if kind == "program":
        f.write(code[0])
    else:
        prelude, body = [], []
        for line in code[0].splitlines():
            (prelude if line.startswith(("#include", "using ")) else body).append(line)
        f.write("#undef NDEBUG\n#include <doctest/doctest.h>\n")
        f.write("\n".join(prelude) + "\n\n")
        f.write(f'TEST_CASE("the README example {name} runs") {{\n')
        f.write("\n".join("    " + line if line else "" for line in body) + "\n}\n")
