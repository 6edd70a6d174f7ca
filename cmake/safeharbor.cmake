# Helpers shared by every service's CMakeLists.

# safeharbor_embed_migrations(<target> <dir>): compiles every <dir>/NNN_name.sql into <target>
# as `const std::vector<safeharbor::Migration>& <namespace>::Migrations()`.
function(safeharbor_embed_migrations target dir namespace)
  file(GLOB sql_files CONFIGURE_DEPENDS "${dir}/*.sql")
  list(SORT sql_files)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${target}_migrations.cc")
  # A ';' would split the command line: pass the list with '|' instead.
  string(REPLACE ";" "|" files_arg "${sql_files}")
  add_custom_command(
    OUTPUT "${out}"
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DNAMESPACE=${namespace} "-DFILES=${files_arg}"
            -P "${PROJECT_SOURCE_DIR}/cmake/embed_sql.cmake"
    DEPENDS ${sql_files} "${PROJECT_SOURCE_DIR}/cmake/embed_sql.cmake"
    COMMENT "Embedding SQL migrations for ${target}"
    VERBATIM)
  target_sources(${target} PRIVATE "${out}")
endfunction()

# The sanitizer runtime's options for every process a test starts (test binaries, and the service
# binaries the black-box tests run): full stacks, so tools/lsan.supp matches what it names.
set(SAFEHARBOR_SANITIZER_ENV "")
if(SAFEHARBOR_SANITIZE)
  set(SAFEHARBOR_SANITIZER_ENV
      "ASAN_OPTIONS=fast_unwind_on_malloc=0:detect_leaks=1:malloc_context_size=64"
      "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tools/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0"
      "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()

# safeharbor_test(<name> SOURCES ... LIBS ...): a GoogleTest binary registered with CTest.
function(safeharbor_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${SAFEHARBOR_WARNINGS})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock)
  add_test(NAME ${name} COMMAND ${name})
  set(env "SAFEHARBOR_SOURCE_DIR=${PROJECT_SOURCE_DIR}" ${SAFEHARBOR_SANITIZER_ENV})
  set_tests_properties(${name} PROPERTIES TIMEOUT 1800 ENVIRONMENT "${env}")
endfunction()

# safeharbor_embed_text(<target> <file> <qualified function name>): compiles the file's text into
# <target> as `absl::string_view <name>()`.
function(safeharbor_embed_text target file func)
  get_filename_component(base "${file}" NAME_WE)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${target}_${base}_text.cc")
  add_custom_command(
    OUTPUT "${out}"
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DIN=${file} -DFUNC=${func}
            -P "${PROJECT_SOURCE_DIR}/cmake/embed_text.cmake"
    DEPENDS "${file}" "${PROJECT_SOURCE_DIR}/cmake/embed_text.cmake"
    COMMENT "Embedding ${base}"
    VERBATIM)
  target_sources(${target} PRIVATE "${out}")
endfunction()

# safeharbor_blackbox_test(<name> <script.py> [TIMEOUT s]): a Python black-box test against the
# built binaries (Debian's python3 with python3-grpcio), with the sanitizer options when on.
function(safeharbor_blackbox_test name script)
  cmake_parse_arguments(T "" "TIMEOUT" "" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  add_test(NAME ${name} COMMAND ${SYSTEM_PYTHON3} ${script})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} ENVIRONMENT
    "BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1;${SAFEHARBOR_SANITIZER_ENV}")
endfunction()
