// How an argument a user passed appears in an error message, for every adapter: quoted, with
// control characters (an embedded NUL among them) shown as escapes, and cut after 60
// characters, so a 10,000-character string or binary junk still gives a readable message.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace ganops {

inline std::string quote_arg(std::string_view text) {
  constexpr size_t kMaxShown = 60;
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      char escape[8];
      std::snprintf(escape, sizeof(escape), "\\x%02x", c);
      out += escape;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += "'";
  if (text.size() > kMaxShown) out += "... (" + std::to_string(text.size()) + " characters)";
  return out;
}

}  // namespace ganops
