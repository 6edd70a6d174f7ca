# Run with cmake -P: writes OUT, a C++ file returning the text of IN from function FUNC (a::b::f).
file(READ "${IN}" text)
string(REGEX MATCH "^(.*)::([^:]+)$" _ "${FUNC}")
set(ns "${CMAKE_MATCH_1}")
set(fn "${CMAKE_MATCH_2}")
file(WRITE "${OUT}.tmp" "// Generated from ${IN}. Do not edit.\n#include \"absl/strings/string_view.h\"\nnamespace ${ns} {\nabsl::string_view ${fn}() {\n  static constexpr char kText[] = R\"safeharbor_text(${text})safeharbor_text\";\n  return absl::string_view(kText, sizeof(kText) - 1);\n}\n}  // namespace ${ns}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
