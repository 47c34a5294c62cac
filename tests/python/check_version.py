#!/usr/bin/python3
"""`meshmaster --version` names the protocol version the code speaks (the constant the handshake
announces), and docs/protocol.md describes that same version.

Usage: check_version.py path/to/meshmaster docs/protocol.md
"""
import re
import subprocess
import sys


def main():
    binary, document = sys.argv[1], sys.argv[2]
    run = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    said = re.fullmatch(r"meshmaster \d+\.\d+\.\d+ \(protocol (\d+)\.(\d+)\)\n", run.stdout)
    if run.returncode != 0 or not said:
        print(f"FAIL: `meshmaster --version` exited {run.returncode} and printed {run.stdout!r}")
        return 1
    text = open(document, encoding="utf-8").read()
    documented = re.search(r"This\s+document\s+describes\s+version\s+\*\*(\d+)\.(\d+)\*\*", text)
    if not documented:
        print(f"FAIL: {document} does not say which version it describes")
        return 1
    if said.groups() != documented.groups():
        print(f"FAIL: the binary speaks protocol {'.'.join(said.groups())}, "
              f"{document} describes {'.'.join(documented.groups())}")
        return 1
    print(f"protocol {'.'.join(said.groups())}: `meshmaster --version` and the document agree; 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
