# rotor_add_test(NAME <target> SOURCES <file>... [LIBS <target>...])
#
# Builds a GoogleTest executable (gtest_main provides main) with rotor's warnings and registers
# each of its tests with CTest through gtest_discover_tests, so `ctest -R Suite.Case` selects
# single tests. No-op when ROTOR_BUILD_TESTS is OFF.
include(GoogleTest)

if(ROTOR_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

function(rotor_add_test)
  cmake_parse_arguments(PARSE_ARGV 0 ARG "" "NAME" "SOURCES;LIBS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "rotor_add_test: unexpected arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_NAME OR NOT ARG_SOURCES)
    message(FATAL_ERROR "rotor_add_test: NAME and SOURCES are required")
  endif()
  if(NOT ROTOR_BUILD_TESTS)
    return()
  endif()

  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE
    ${ARG_LIBS}
    rotor::warnings
    GTest::gmock
    GTest::gtest_main)
  # PRE_TEST: tests are listed when ctest runs, not as a build step, so a build never fails
  # because a freshly linked (sanitized) test binary was started in the build environment.
  gtest_discover_tests(${ARG_NAME}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS unit)
endfunction()
