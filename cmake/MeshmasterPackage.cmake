# `cpack -G DEB` in the release tree: meshmaster_<version>_<arch>.deb, installed under /usr.
#
#   cmake --build build/release && cpack --config build/release/CPackConfig.cmake -G DEB -B build/release/deb
#
# One package: the daemon with its unit, man page and example configuration, and the libraries with
# their headers, CMake and pkg-config files (a split into meshmaster, libmeshmaster-slave0.1 and
# libmeshmaster-dev is for when other packages build against it). It is made from what the release
# tree installs (cmake/MeshmasterInstall.cmake); cmake/MeshmasterDebStaging.cmake, run by CPack
# between the install and the packing, turns that prefix layout into the system's (see there).
set(MESHMASTER_PACKAGE_MAINTAINER "meshmaster maintainers <meshmaster@example.org>" CACHE STRING
    "The Debian package's Maintainer field (Name <address>)")

set(CPACK_PACKAGE_NAME meshmaster)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "meshmaster")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "zero-downtime supervisor for sharded worker fleets")
set(CPACK_PACKAGE_DESCRIPTION [=[meshmaster runs a fleet of worker processes (slaves) that share a fixed
number of shards. It grants each shard to exactly one slave and replaces the
slaves one slot after another by moving every shard, with its state, to the
replacement, so that a rolling restart stops no shard for longer than a
handoff. It recovers from its own crashes through an event log while the
slaves keep running, and runs under systemd (Type=notify, watchdog).
.
This package holds the daemon and its command-line client, its systemd unit,
and the libraries workers embed (libmeshmaster-slave, -mesh, -protocol) with
their headers.]=])
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # lintian refuses unstripped binaries; perf and gdb use the build tree's
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/deb)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # meshmaster_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${MESHMASTER_PACKAGE_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Dependencies from what the binaries link (dpkg-shlibdeps): libc6, libssl3, libfmt9, libsystemd0,
# libhiredis0.14, …. Besides them only what postinst runs: systemd-sysusers, from systemd or its
# standalone package.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd | systemd-standalone-sysusers")
# The package's own shared libraries: a shlibs file (so that dpkg-shlibdeps resolves the libraries'
# dependencies on each other, and other packages' on them); deploy/debian/triggers runs ldconfig.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")  # 0.x: every minor version may change the ABI
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm
    ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles
    ${PROJECT_SOURCE_DIR}/deploy/debian/triggers)

# What every Debian package carries in /usr/share/doc/<package>: the copyright and (compressed) a
# changelog.
configure_file(${PROJECT_SOURCE_DIR}/deploy/debian/changelog.in ${PROJECT_BINARY_DIR}/deb-staging/changelog @ONLY)
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_SOURCE_DIR}/cmake/MeshmasterDebStaging.cmake)
set(CPACK_MESHMASTER_SOURCE_DIR ${PROJECT_SOURCE_DIR})
set(CPACK_MESHMASTER_BINARY_DIR ${PROJECT_BINARY_DIR})

include(CPack)
