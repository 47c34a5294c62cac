#!/bin/bash
# A build outside meshmaster's tree with pkg-config and a plain g++ command line, as a Makefile
# would do it. Usage: build.sh LIBDIR SOURCE OUTPUT (the installed library directory, holding
# pkgconfig/; the worker's source; the program to write).
set -euo pipefail
libdir=$1
source=$2
output=$3
export PKG_CONFIG_PATH=$libdir/pkgconfig
# The rpath, because the library directory is not in the loader's search path.
g++ -std=c++20 "$source" -o "$output" \
  $(pkg-config --cflags --libs meshmaster-slave) -Wl,-rpath,"$libdir"
