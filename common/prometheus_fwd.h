// Forward declarations of the prometheus-cpp types headers name without using.
#pragma once

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus
