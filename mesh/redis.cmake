# Redis discovery for the mesh: RESP over an Asio TCP socket, with hiredis as the codec only
# (redisFormatCommandArgv, redisReader). Built with the programs, like every Asio part: the
# sanitizer unit-test tree (MESHMASTER_PROGRAMS=OFF) and the fuzz tree have no Asio.
if(MESHMASTER_PROGRAMS AND NOT MESHMASTER_FUZZ)
  # hiredis 0.14 (Debian 12) ships a pkg-config file but no CMake package. GLOBAL: the
  # integration test, in another directory, checks keys with hiredis' blocking client.
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET GLOBAL hiredis)

  add_library(meshmaster_mesh_redis STATIC
    src/redis_discovery.cpp
    src/redis_records.cpp
    src/resp_connection.cpp
  )
  add_library(meshmaster::mesh_redis ALIAS meshmaster_mesh_redis)
  target_include_directories(meshmaster_mesh_redis PUBLIC include)
  # meshmaster::asio is public: the header names asio::any_io_executor, and every user must see
  # Asio configured the same way.
  target_link_libraries(meshmaster_mesh_redis
    PUBLIC meshmaster::mesh_core meshmaster::asio
    PRIVATE meshmaster::json PkgConfig::HIREDIS)
endif()
