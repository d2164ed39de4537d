# Applies ROTOR_SANITIZERS (e.g. "address,undefined") to every target of the build, ours and
# any built from source, so instrumented and uninstrumented code never mix in one binary.
# Any recoverable sanitizer report aborts the process: a test that trips UBSan fails.
if(ROTOR_SANITIZERS)
  add_compile_options(
    -fsanitize=${ROTOR_SANITIZERS}
    -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${ROTOR_SANITIZERS} -fno-sanitize-recover=all)
endif()
