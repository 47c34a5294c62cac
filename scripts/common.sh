# Shared by scripts/test, demo, bench and fuzz: one definition of each build tree, so the commands
# never configure the same tree two different ways (which would rebuild it back and forth).
#   build/sanitize  g++ + ASan + UBSan   unit tests (no Asio programs: they are built once, below)
#   build/release   g++ -O2              the daemon, examples, integration tests, benchmarks
#   build/fuzz      clang + libFuzzer    fuzz targets only
# CI (CI set in the environment) turns warnings into errors. Without CI the setting is left as the
# tree has it, so running the demo after a CI-style test run does not rebuild everything.

werror=()
[[ -n ${CI:-} && ${CI:-} != false ]] && werror=(-DMESHMASTER_WERROR=ON)

configure_tree() {
  local tree=$1
  shift
  local flags=()
  case $tree in
    sanitize) flags=(-DCMAKE_BUILD_TYPE=Debug -DMESHMASTER_SANITIZE=ON -DMESHMASTER_BENCHMARKS=OFF -DMESHMASTER_PROGRAMS=OFF) ;;
    release) flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESHMASTER_UNIT_TESTS=OFF) ;;
    fuzz) flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DMESHMASTER_FUZZ=ON) ;;
  esac
  cmake -S . -B "build/$tree" -G Ninja -Wno-dev "${werror[@]}" "${flags[@]}" "$@" >/dev/null
}

build_tree() {
  echo "== building build/$1" >&2
  cmake --build "build/$1"
}
