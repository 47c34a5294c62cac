# Run by CPack (CPACK_PRE_BUILD_SCRIPTS, cmake/MeshmasterPackage.cmake) after it installed the
# release tree under /usr in its staging directory, before it packs the .deb: what a system
# package needs and `cmake --install --prefix P` must not do, since that writes inside P only.
#   - No RUNPATH: the shared libraries carry $ORIGIN so that they find each other in any prefix;
#     in /usr the loader finds them anyway, and lintian refuses a search path in a package.
#   - The unit in /lib/systemd/system, where Debian 12's systemd and lintian expect a package's
#     units (the prefix's lib/systemd/system is /usr/lib/systemd/system here).
#   - The example configuration as /etc/meshmaster/meshmaster.toml, a conffile (deploy/debian/
#     conffiles): dpkg keeps the administrator's edits across upgrades.
#   - /usr/share/doc/meshmaster/copyright and changelog.gz.
# Reusing the release tree's build this way costs the suite no second build (a packaging tree
# configured with CMAKE_INSTALL_PREFIX=/usr and CMAKE_SKIP_INSTALL_RPATH=ON would compile it all again).
if(NOT CPACK_GENERATOR STREQUAL "DEB")
  return()
endif()
set(root ${CPACK_TEMPORARY_INSTALL_DIRECTORY})
if(NOT IS_DIRECTORY "${root}/usr/bin")
  message(FATAL_ERROR "MeshmasterDebStaging: no usr/bin under the staging directory '${root}'")
endif()

file(GLOB_RECURSE elf_files LIST_DIRECTORIES false "${root}/usr/bin/*" "${root}/usr/lib/*.so.*")
foreach(file IN LISTS elf_files)
  if(NOT IS_SYMLINK "${file}")
    file(RPATH_REMOVE FILE "${file}")
  endif()
endforeach()

file(MAKE_DIRECTORY "${root}/lib/systemd/system")
file(RENAME "${root}/usr/lib/systemd/system/meshmaster.service" "${root}/lib/systemd/system/meshmaster.service")
file(REMOVE_RECURSE "${root}/usr/lib/systemd")

file(MAKE_DIRECTORY "${root}/etc/meshmaster")
file(COPY_FILE "${CPACK_MESHMASTER_SOURCE_DIR}/deploy/meshmaster.toml.example" "${root}/etc/meshmaster/meshmaster.toml")

set(doc "${root}/usr/share/doc/meshmaster")
file(COPY_FILE "${CPACK_MESHMASTER_SOURCE_DIR}/deploy/debian/copyright" "${doc}/copyright")
execute_process(COMMAND gzip -9n -c "${CPACK_MESHMASTER_BINARY_DIR}/deb-staging/changelog"
                OUTPUT_FILE "${doc}/changelog.gz" COMMAND_ERROR_IS_FATAL ANY)
