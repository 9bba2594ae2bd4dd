# Compiles one snippet (-fsyntax-only) and checks the outcome:
#   EXPECT=pass   it compiles;
#   EXPECT=fail   it fails, the output matches MATCH, and has at most MAX_ERRORS
#                 "error:" lines (a wrong parser must give a short error, not
#                 pages from inside connection.h).
# Inputs: COMPILER, SOURCE, INCLUDES (;-list), EXPECT, MATCH, MAX_ERRORS, EXTRA_FLAGS.
set(args -std=c++20 -fsyntax-only -Werror=unused-result ${EXTRA_FLAGS})
foreach(dir ${INCLUDES})
  list(APPEND args -I${dir})
endforeach()
execute_process(COMMAND ${COMPILER} ${args} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
get_filename_component(name ${SOURCE} NAME)
if(EXPECT STREQUAL "pass")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAIL ${name} should compile:\n${all}")
  endif()
  message("PASS ${name} compiles")
  return()
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "FAIL ${name} compiled but must not")
endif()
if(NOT all MATCHES "${MATCH}")
  message(FATAL_ERROR "FAIL ${name}: the error does not mention '${MATCH}':\n${all}")
endif()
string(REGEX MATCHALL "error:" errors "${all}")
list(LENGTH errors n)
if(n GREATER MAX_ERRORS)
  message(FATAL_ERROR "FAIL ${name}: ${n} errors (at most ${MAX_ERRORS} expected):\n${all}")
endif()
message("PASS ${name} fails with ${n} error(s) mentioning '${MATCH}'")
