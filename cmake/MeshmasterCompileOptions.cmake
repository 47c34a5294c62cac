# Compiler flags shared by every target of the project. Kept in one place so the three build trees
# (release, sanitizers, fuzz) differ only in the options scripts/test passes.

add_compile_options(-Wall -Wextra -Wpedantic)
# Messages are aggregates with default member initializers, meant to be built with designated
# initializers naming only the fields that matter (`stop_shard{.shard = 3, .epoch = 9}`). g++ 12
# warns about every member left out even though each has a default; nothing is uninitialised.
add_compile_options(-Wno-missing-field-initializers)
if(MESHMASTER_WERROR)
  add_compile_options(-Werror)
endif()

# g++ 12 reports a false -Wmismatched-new-delete inside Asio's aligned allocation; Asio's own
# switch avoids the code path (see DESIGN.md, "Known traps").
add_compile_definitions(BOOST_ASIO_DISABLE_STD_ALIGNED_ALLOC)

if(MESHMASTER_SANITIZE OR MESHMASTER_FUZZ)
  # Every finding is fatal: a test that "passes" with a sanitizer report is a failed test.
  set(meshmaster_sanitizers -fsanitize=address,undefined -fno-sanitize-recover=all
                            -fno-omit-frame-pointer)
  add_compile_options(${meshmaster_sanitizers})
  add_link_options(${meshmaster_sanitizers})
endif()

if(MESHMASTER_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MESHMASTER_FUZZ needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  # Instrument all code for coverage; only the fuzz targets link libFuzzer's main().
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
