# cmake -P script: installs the build tree and builds outside projects against
# it with find_package(ringline ...), then runs them. It proves:
#  1. a consumer asking for engine + net configures, builds and runs on a
#     system where pkg-config cannot see libnvme, and links nothing of NVMe;
#     asking for nvme there fails, naming libnvme;
#  2. a consumer asking for nvme (and one asking for everything, with no
#     COMPONENTS) gets it where libnvme is present; the object store example
#     (examples/object_store, the project docs/guide.md builds) builds out of
#     tree asking for engine, net and block only, without libnvme;
#  3. Debug and Release builds installed into one prefix side by side each
#     resolve to their own libraries (skipped in sanitizer builds, where the
#     gcc build has already shown it; it builds the libraries twice more).
# Inputs: BUILD_DIR RINGLINE_SOURCE_DIR SOURCE_DIR (the consumer) EXAMPLE_DIR (the
# object store example, built as a project of its own) WORK_DIR CXX C
# FLAGS SANITIZE LAUNCHER.
file(REMOVE_RECURSE ${WORK_DIR})
set(PREFIX ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAIL (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()
# Configures and builds the consumer in `dir`; extra arguments go to the configure.
function(build_consumer dir env)
  run(${CMAKE_COMMAND} -E env ${env} ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${dir}
      -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_C_COMPILER=${C}
      "-DCMAKE_CXX_FLAGS=${FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${FLAGS}" ${ARGN})
  run(${CMAKE_COMMAND} --build ${dir})
  run(${dir}/consumer)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX})
if(NOT EXISTS ${PREFIX}/include/ringline/task.h OR NOT EXISTS ${PREFIX}/lib/cmake/ringline/ringlineConfig.cmake)
  message(FATAL_ERROR "FAIL: install tree lacks headers or the CMake package")
endif()
# blockserve, its systemd units and the example configuration.
foreach(f bin/blockserve lib/systemd/system/blockserve.service lib/systemd/system/blockserve.socket
    etc/blockserve/blockserve.toml)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "FAIL: install tree lacks ${f}")
  endif()
endforeach()

# ---- 1. without libnvme --------------------------------------------------------
# A pkg-config search path holding liburing only: libnvme is invisible.
execute_process(COMMAND pkg-config --variable=pcfiledir liburing OUTPUT_VARIABLE uring_pc_dir
  OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "FAIL: pkg-config cannot find liburing")
endif()
set(NO_NVME_PC ${WORK_DIR}/pkgconfig-without-libnvme)
file(MAKE_DIRECTORY ${NO_NVME_PC})
file(COPY ${uring_pc_dir}/liburing.pc DESTINATION ${NO_NVME_PC})
set(NO_NVME_ENV PKG_CONFIG_LIBDIR=${NO_NVME_PC} PKG_CONFIG_PATH=)
execute_process(COMMAND ${CMAKE_COMMAND} -E env ${NO_NVME_ENV} pkg-config --exists libnvme
  RESULT_VARIABLE hidden)
if(hidden EQUAL 0)
  message(FATAL_ERROR "FAIL: could not hide libnvme from pkg-config")
endif()
build_consumer(${WORK_DIR}/engine-net "${NO_NVME_ENV}" -DCMAKE_PREFIX_PATH=${PREFIX}
  -DRINGLINE_COMPONENTS=engine,net)
file(GLOB_RECURSE link_files ${WORK_DIR}/engine-net/*link.txt)
foreach(f ${link_files})
  file(READ ${f} link_line)
  if(link_line MATCHES "nvme")
    message(FATAL_ERROR "FAIL: the engine+net consumer links NVMe code: ${link_line}")
  endif()
endforeach()
message(STATUS "PASS: engine+net consumer built and ran without libnvme")
execute_process(COMMAND ${CMAKE_COMMAND} -E env ${NO_NVME_ENV}
    ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/nvme-missing -DCMAKE_PREFIX_PATH=${PREFIX}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_C_COMPILER=${C} -DRINGLINE_COMPONENTS=nvme,net
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT "${out}${err}" MATCHES "libnvme")
  message(FATAL_ERROR "FAIL: asking for nvme without libnvme should fail naming libnvme:\n${out}\n${err}")
endif()
message(STATUS "PASS: asking for nvme without libnvme fails naming libnvme")

# ---- 2. with libnvme -----------------------------------------------------------
build_consumer(${WORK_DIR}/nvme "" -DCMAKE_PREFIX_PATH=${PREFIX} -DRINGLINE_COMPONENTS=nvme,net
  -DUSE_NVME=ON)
build_consumer(${WORK_DIR}/all "" -DCMAKE_PREFIX_PATH=${PREFIX} -DUSE_NVME=ON)
message(STATUS "PASS: nvme and all-component consumers built and ran")

# ---- 2b. the guide's project ---------------------------------------------------
# The object store example (examples/object_store), built out of tree as
# docs/guide.md builds it: engine, net and block, no libnvme.
run(${CMAKE_COMMAND} -E env ${NO_NVME_ENV} ${CMAKE_COMMAND} -S ${EXAMPLE_DIR}
    -B ${WORK_DIR}/object_store -DCMAKE_PREFIX_PATH=${PREFIX}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_C_COMPILER=${C}
    "-DCMAKE_CXX_FLAGS=${FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/object_store)
execute_process(COMMAND ${WORK_DIR}/object_store/object_store RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "usage: .*--slab PATH")
  message(FATAL_ERROR "FAIL: the out-of-tree object_store did not run (${rc}): ${err}")
endif()
message(STATUS "PASS: the guide's object store built out of tree (without libnvme) and runs")

# ---- 3. Debug and Release side by side -----------------------------------------
if(SANITIZE)
  message(STATUS "SKIPPED: side-by-side Debug/Release install (a sanitizer build; the gcc build checks it)")
  return()
endif()
set(PREFIX2 ${WORK_DIR}/prefix-two-configs)
# What is checked is the packaging of two configurations, not their code, so
# both compile with the cheapest flags (-O0, no debug info). Their compile
# commands are then the same, and with ccache the second configuration's
# objects are cache hits.
foreach(config Debug Release)
  set(dir ${WORK_DIR}/ringline-${config})
  run(${CMAKE_COMMAND} -S ${RINGLINE_SOURCE_DIR} -B ${dir} -G Ninja -DCMAKE_BUILD_TYPE=${config}
      -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_C_COMPILER=${C} -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}
      -DCMAKE_C_COMPILER_LAUNCHER=${LAUNCHER}
      -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DCMAKE_CXX_FLAGS_RELEASE=-O0
      -DCMAKE_C_FLAGS_DEBUG=-O0 -DCMAKE_C_FLAGS_RELEASE=-O0
      -DRINGLINE_BUILD_TESTS=OFF -DRINGLINE_BUILD_BENCH=OFF -DRINGLINE_BUILD_TOOLS=OFF)
  run(${CMAKE_COMMAND} --build ${dir})
  run(${CMAKE_COMMAND} --install ${dir} --prefix ${PREFIX2})
endforeach()
foreach(f lib/libringline_engined.a lib/libringline_engine.a lib/libringline_nvmed.a
    lib/cmake/ringline/ringline-engine-targets-debug.cmake
    lib/cmake/ringline/ringline-engine-targets-release.cmake)
  if(NOT EXISTS ${PREFIX2}/${f})
    message(FATAL_ERROR "FAIL: the two-configuration prefix lacks ${f}")
  endif()
endforeach()
foreach(config Debug Release)
  set(dir ${WORK_DIR}/consumer-${config})
  build_consumer(${dir} "" -DCMAKE_PREFIX_PATH=${PREFIX2} -DCMAKE_BUILD_TYPE=${config} -DUSE_NVME=ON)
  file(GLOB_RECURSE link_files ${dir}/*link.txt)
  file(READ ${link_files} link_line)
  if(config STREQUAL "Debug")
    set(want "libringline_engined.a")
  else()
    set(want "libringline_engine.a")
  endif()
  string(FIND "${link_line}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "FAIL: the ${config} consumer does not link ${want}: ${link_line}")
  endif()
endforeach()
message(STATUS "PASS: Debug and Release installed side by side, each consumer linked its own")
