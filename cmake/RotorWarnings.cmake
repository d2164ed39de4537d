# rotor::warnings: the warning set for rotor's own code. Link it PRIVATE from every rotor
# target (never from third-party code); third-party headers arrive through imported targets or
# /usr/include, which the compiler treats as system headers, so they cannot trip -Werror.
add_library(rotor_warnings INTERFACE)
add_library(rotor::warnings ALIAS rotor_warnings)

target_compile_options(rotor_warnings INTERFACE
  -Wall
  -Wextra
  -Wpedantic
  -Wshadow
  -Wnon-virtual-dtor
  -Woverloaded-virtual
  -Wconversion
  -Wcast-qual
  -Wformat=2
  -Wimplicit-fallthrough
  -Wmissing-declarations
  # GCC-only checks; clang builds (fuzzers, clang-tidy) skip them.
  $<$<CXX_COMPILER_ID:GNU>:-Wduplicated-cond -Wlogical-op>
  $<$<BOOL:${ROTOR_WERROR}>:-Werror>)
