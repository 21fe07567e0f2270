# Turns a file into a C++ header that holds its bytes, so the binary carries the file and never
# looks for it at run time (the agent's status page, src/status_page.html).
#
#   cmake -DINPUT=src/status_page.html -DOUTPUT=status_page_html.h -DNAME=status_page_html
#         -P cmake/embed_file.cmake
#
# The header defines `std::string_view burrow::NAME()`. Bytes, not a raw string literal: any
# content is safe, whatever delimiters it holds.
foreach(var INPUT OUTPUT NAME)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "embed_file.cmake: -D${var}=... is missing")
    endif()
endforeach()

file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
# Sixteen bytes a line.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n    " bytes "${bytes}")
get_filename_component(source "${INPUT}" NAME)

file(WRITE "${OUTPUT}.tmp" "// Generated from ${source} by cmake/embed_file.cmake; do not edit.
#pragma once

#include <cstddef>
#include <string_view>

namespace burrow {

inline constexpr unsigned char k_${NAME}_bytes[${size} + 1] = {
    ${bytes}0x00};

inline std::string_view ${NAME}() {
    return {reinterpret_cast<const char*>(k_${NAME}_bytes), ${size}};
}

}  // namespace burrow
")
# Only a changed header makes its users compile again.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
