// Structured logs: one JSON object per line on stderr, one line per event.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace safeharbor::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

using Fields = std::initializer_list<std::pair<absl::string_view, absl::string_view>>;

// Process-wide settings; call once from main before serving.
void SetServiceName(absl::string_view name);
void SetMinLevel(Level level);
bool ParseLevel(absl::string_view text, Level* level);

// Writes {"ts":..., "level":..., "service":..., "event":..., <fields>} as one line.
void Event(Level level, absl::string_view event, Fields fields = {});

inline void Info(absl::string_view event, Fields fields = {}) {
  Event(Level::kInfo, event, fields);
}
inline void Warn(absl::string_view event, Fields fields = {}) {
  Event(Level::kWarn, event, fields);
}
inline void Error(absl::string_view event, Fields fields = {}) {
  Event(Level::kError, event, fields);
}

// JSON string escaping, exposed for tests.
std::string JsonEscape(absl::string_view text);

}  // namespace safeharbor::log
