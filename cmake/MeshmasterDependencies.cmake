# Third-party packages, all from Debian 12 (scripts/install-deps installs them).
# msgpack-c's C++ headers live in the project-local prefix .deps/msgpack because the Debian package
# cannot be installed beside libboost1.81-dev (see scripts/install-deps).
list(APPEND CMAKE_PREFIX_PATH "${PROJECT_SOURCE_DIR}/.deps/msgpack/usr")

find_package(Boost 1.81.0 EXACT REQUIRED CONFIG) # header-only parts: System, Endian, Asio, Beast
find_package(msgpack REQUIRED CONFIG)            # imported target msgpackc-cxx
find_package(fmt REQUIRED CONFIG)
if(MESHMASTER_UNIT_TESTS AND NOT MESHMASTER_FUZZ)
  find_package(doctest REQUIRED CONFIG)
endif()
