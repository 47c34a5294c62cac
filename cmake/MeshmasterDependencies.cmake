# Third-party packages, all from Debian 12 (scripts/install-deps installs them).
# msgpack-c's C++ headers live in the project-local prefix .deps/msgpack because the Debian package
# cannot be installed beside libboost1.81-dev (see scripts/install-deps).
list(APPEND CMAKE_PREFIX_PATH "${PROJECT_SOURCE_DIR}/.deps/msgpack/usr")

find_package(Boost 1.81.0 EXACT REQUIRED CONFIG) # header-only parts: System, Endian, Asio, Beast
find_package(msgpack REQUIRED CONFIG)            # imported target msgpackc-cxx
find_package(fmt REQUIRED CONFIG)
find_package(OpenSSL 3 REQUIRED COMPONENTS Crypto SSL)  # HMAC challenge-response, random nonces; TLS (SSL)
if(MESHMASTER_UNIT_TESTS AND NOT MESHMASTER_FUZZ)
  find_package(doctest REQUIRED CONFIG)
endif()

if(NOT MESHMASTER_FUZZ)
  # Howard Hinnant's date (header-only: date::date): RFC 3339 and local times on the command line,
  # the calendar that C++20's <chrono> has but libstdc++ 12 does not.
  find_package(date REQUIRED CONFIG)
  # zlib's crc32 for the checkpoint log: the same CRC-32 as Boost.CRC's crc_32_type, but braided
  # (several bytes per step) instead of a byte at a time — Boost.CRC was 8 % of a 2-core machine's
  # CPU during a 16,384-shard rolling restart.
  find_package(ZLIB REQUIRED)
endif()

set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)  # the checkpoint store's writer, Asio

if(MESHMASTER_PROGRAMS AND NOT MESHMASTER_FUZZ)
  find_package(CLI11 REQUIRED CONFIG)  # command lines
  # The daemon's TOML config file. CLI11 2.1 can read TOML too, but maps [sections] only onto
  # subcommands; toml++ reads the sectioned file and reports errors with line and column.
  find_package(tomlplusplus REQUIRED CONFIG)
  target_compile_definitions(tomlplusplus::tomlplusplus INTERFACE TOML_HEADER_ONLY=0 TOML_SHARED_LIB=1)
  # sd_notify(3) for a Type=notify service (readiness, status, reload, stop, watchdog): the daemon
  # alone links it (master/src/systemd_notify.cpp), never the libraries.
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)

endif()


if(NOT MESHMASTER_FUZZ)
  # Everything that uses Boost.Asio links this: Asio is header-only, but wants threads and, with
  # g++ 12, the aligned-allocation switch set globally in MeshmasterCompileOptions.cmake. (Also in
  # the sanitizer tree: the Asio shells' unit tests.)
  add_library(meshmaster_asio INTERFACE)
  target_link_libraries(meshmaster_asio INTERFACE Boost::headers Threads::Threads)
  target_compile_definitions(meshmaster_asio INTERFACE BOOST_ASIO_NO_DEPRECATED)
  add_library(meshmaster::asio ALIAS meshmaster_asio)
endif()
