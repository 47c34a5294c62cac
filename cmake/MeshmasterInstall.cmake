# What `cmake --install` puts under its prefix (release tree only: it builds every library and the
# daemon). Other projects build against the result with find_package(meshmaster CONFIG) or
# pkg-config; tests/install checks both, and that nothing lands outside the prefix.
#
# The installed libraries, each shared (with a SONAME) and static, from the same objects:
#   meshmaster::protocol  libmeshmaster-protocol.so.N  frames, messages, codec (+ Boost.JSON's
#                                                      implementation and json_text.hpp)
#   meshmaster::mesh      libmeshmaster-mesh.so.N      the UDP mesh: core, Asio node, Redis discovery
#   meshmaster::slave     libmeshmaster-slave.so.N     the worker library (its Asio shell and TCP/TLS
#                                                      byte stream folded in)
#   meshmaster::<name>_static                          libmeshmaster-<name>.a, the same code
# The project's own programs keep linking the internal static libraries; these targets exist for
# the install only. Their objects are the internal libraries' objects, compiled position-independent
# in this tree, so nothing is compiled twice.
include(CMakePackageConfigHelpers)

# While the major version is 0 every minor release may change the ABI, so the SONAME carries
# major.minor (libmeshmaster-slave.so.0.1) and the package version file accepts the same minor
# version only (SameMinorVersion). From 1.0 on the SONAME is the major alone.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(meshmaster_soversion ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  set(meshmaster_compatibility SameMinorVersion)
else()
  set(meshmaster_soversion ${PROJECT_VERSION_MAJOR})
  set(meshmaster_compatibility SameMajorVersion)
endif()

set(meshmaster_pieces_protocol meshmaster_protocol meshmaster_json)
set(meshmaster_pieces_mesh meshmaster_mesh_core meshmaster_mesh meshmaster_mesh_redis)
set(meshmaster_pieces_slave meshmaster_slave meshmaster_slave_shell meshmaster_slave_core meshmaster_shell)
foreach(name protocol mesh slave)
  foreach(piece IN LISTS meshmaster_pieces_${name})
    set_target_properties(${piece} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endforeach()
endforeach()

# Asio's configuration is part of the mesh's API (its headers name Asio types): users compile Asio
# as the library was compiled.
set(meshmaster_asio_definitions BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_DISABLE_STD_ALIGNED_ALLOC)

function(meshmaster_installed_library name)
  cmake_parse_arguments(arg "" "" "PUBLIC;PRIVATE;DEFINITIONS;INCLUDES" ${ARGN})
  set(objects)
  foreach(piece IN LISTS meshmaster_pieces_${name})
    list(APPEND objects $<TARGET_OBJECTS:${piece}>)
  endforeach()
  foreach(kind SHARED STATIC)
    if(kind STREQUAL SHARED)
      set(target meshmaster_${name}_installed)
      set(export_name ${name})
      set(suffix "")
    else()
      set(target meshmaster_${name}_installed_static)
      set(export_name ${name}_static)
      set(suffix _static)
    endif()
    add_library(${target} ${kind} ${objects})
    set(public_deps)
    foreach(dep IN LISTS arg_PUBLIC)
      if(dep MATCHES "^meshmaster_(.*)_installed$")
        list(APPEND public_deps ${dep}${suffix})
      else()
        list(APPEND public_deps ${dep})
      endif()
    endforeach()
    target_link_libraries(${target} PUBLIC ${public_deps} PRIVATE ${arg_PRIVATE})
    set(build_includes)
    foreach(dir IN LISTS arg_INCLUDES)
      list(APPEND build_includes $<BUILD_INTERFACE:${dir}>)
    endforeach()
    target_include_directories(${target} INTERFACE ${build_includes}
                               $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    target_compile_definitions(${target} INTERFACE ${arg_DEFINITIONS})
    set_target_properties(${target} PROPERTIES
      OUTPUT_NAME meshmaster-${name}
      EXPORT_NAME ${export_name}
      LINKER_LANGUAGE CXX)
    if(kind STREQUAL SHARED)
      # RUNPATH $ORIGIN: the slave library finds the protocol and mesh libraries beside it in any
      # prefix (a program's own RUNPATH does not apply to its libraries' dependencies). A package
      # for /usr, where the loader looks anyway, can drop it with -DCMAKE_SKIP_INSTALL_RPATH=ON.
      set_target_properties(${target} PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${meshmaster_soversion}
                                                 INSTALL_RPATH "$ORIGIN")
      # Every symbol a piece needs must come from a library named here, not from the program.
      target_link_options(${target} PRIVATE LINKER:--no-undefined)
    endif()
  endforeach()
endfunction()

meshmaster_installed_library(protocol
  INCLUDES ${PROJECT_SOURCE_DIR}/protocol/include
  PUBLIC Boost::headers
  PRIVATE OpenSSL::Crypto)
meshmaster_installed_library(mesh
  INCLUDES ${PROJECT_SOURCE_DIR}/mesh/include
  PUBLIC meshmaster_protocol_installed Boost::headers Threads::Threads
  PRIVATE OpenSSL::Crypto PkgConfig::HIREDIS
  DEFINITIONS ${meshmaster_asio_definitions})
meshmaster_installed_library(slave
  INCLUDES ${PROJECT_SOURCE_DIR}/slave/include
  PUBLIC meshmaster_protocol_installed meshmaster_mesh_installed Threads::Threads
  PRIVATE fmt::fmt OpenSSL::SSL OpenSSL::Crypto
  DEFINITIONS ${meshmaster_asio_definitions})

set(meshmaster_installed_targets)
foreach(name protocol mesh slave)
  list(APPEND meshmaster_installed_targets meshmaster_${name}_installed meshmaster_${name}_installed_static)
endforeach()
install(TARGETS ${meshmaster_installed_targets}
  EXPORT meshmasterTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# Public headers. The shell's (byte_stream) are not among them: no public header includes them.
foreach(part protocol mesh slave)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${part}/include/meshmaster DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/docs/protocol.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(TARGETS meshmaster RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The CMake package: meshmasterConfig.cmake finds the dependencies, then the exported targets.
set(meshmaster_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/meshmaster)
install(EXPORT meshmasterTargets NAMESPACE meshmaster:: FILE meshmasterTargets.cmake DESTINATION ${meshmaster_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/meshmasterConfig.cmake.in
  ${PROJECT_BINARY_DIR}/meshmasterConfig.cmake INSTALL_DESTINATION ${meshmaster_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/meshmasterConfigVersion.cmake
  COMPATIBILITY ${meshmaster_compatibility})
install(FILES ${PROJECT_BINARY_DIR}/meshmasterConfig.cmake ${PROJECT_BINARY_DIR}/meshmasterConfigVersion.cmake
  DESTINATION ${meshmaster_cmake_dir})

# pkg-config files, relocatable: the prefix is found from the .pc file's own place, so that
# `cmake --install --prefix P` (a prefix chosen after configuring) yields correct paths.
set(meshmaster_pc_dir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH meshmaster_pc_to_prefix /root/${meshmaster_pc_dir} /root)
foreach(name protocol mesh slave)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/meshmaster-${name}.pc.in
                 ${PROJECT_BINARY_DIR}/meshmaster-${name}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/meshmaster-${name}.pc DESTINATION ${meshmaster_pc_dir})
endforeach()

# What runs the daemon as a service: the man page, the systemd unit and an example configuration.
# The man page is shipped gzip -9n'd (no name or time stamp in the header, so the build is
# reproducible), as Debian policy asks of packaged man pages; man reads either form.
set(meshmaster_man_page ${PROJECT_BINARY_DIR}/meshmaster.1.gz)
add_custom_command(OUTPUT ${meshmaster_man_page}
  COMMAND sh -c "gzip -9n -c '${PROJECT_SOURCE_DIR}/deploy/man/meshmaster.1' > '${meshmaster_man_page}'"
  DEPENDS ${PROJECT_SOURCE_DIR}/deploy/man/meshmaster.1
  COMMENT "Compressing the man page meshmaster.1"
  VERBATIM)
add_custom_target(meshmaster_man_page ALL DEPENDS ${meshmaster_man_page})
install(FILES ${meshmaster_man_page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${PROJECT_SOURCE_DIR}/docs/operations.md ${PROJECT_SOURCE_DIR}/docs/events.md ${PROJECT_SOURCE_DIR}/docs/http.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The unit in <prefix>/lib/systemd/system, the system user's sysusers.d file in <prefix>/lib/sysusers.d,
# the example configuration and the Grafana dashboard in <prefix>/share/meshmaster: `cmake --install --prefix P` writes nothing
# outside P. The Debian package moves the unit to /lib/systemd/system and adds the configuration as
# /etc/meshmaster/meshmaster.toml (cmake/MeshmasterDebStaging.cmake).
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/meshmaster.service DESTINATION lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/sysusers.d/meshmaster.conf DESTINATION lib/sysusers.d)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/meshmaster.toml.example DESTINATION ${CMAKE_INSTALL_DATADIR}/meshmaster)
# The Grafana dashboard over the daemon's /metrics, to import (docs/operations.md, "Metrics").
install(FILES ${PROJECT_SOURCE_DIR}/deploy/grafana/meshmaster.json DESTINATION ${CMAKE_INSTALL_DATADIR}/meshmaster/grafana)
