// Shared pieces of the emulated-kernel drivers: guarded "device" buffers, comparisons, the case
// count and the one-line summary. A driver exits 0 only when every case matched.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "emu.h"
#include "ganops/cuda/launch.h"  // cuda::DType

namespace drv {

// The launchers' dtype tag of a driver's element type.
template <class T> ganops::cuda::DType dtype_of();
template <> inline ganops::cuda::DType dtype_of<float>() { return ganops::cuda::DType::kFloat32; }
template <> inline ganops::cuda::DType dtype_of<double>() { return ganops::cuda::DType::kFloat64; }

// The CPU reference templates' ParallelFor, run serially.
struct SerialPF {
  template <class F>
  void operator()(int64_t begin, int64_t end, int64_t /*grain*/, const F& f) const {
    if (end > begin) f(begin, end);
  }
};

// splitmix64: fast, and the same numbers on every platform (unlike std::normal_distribution).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double symmetric() { return 2.0 * uniform() - 1.0; }           // [-1, 1)
  template <class T> void fill(std::vector<T>& v, double scale = 1.0) {
    for (T& x : v) x = T(scale * symmetric());
  }

 private:
  uint64_t s_;
};

constexpr unsigned char kPoison = 0xCD;
constexpr size_t kGuard = 256;  // poisoned bytes before and after every buffer
constexpr size_t kAlign = 256;  // cudaMalloc's alignment

// A stand-in for a device allocation of exactly `bytes` bytes, 256-aligned, poisoned (0xCD)
// inside and in guard zones on both sides. check() reports writes into the guards.
class Buffer {
 public:
  Buffer(const char* name, size_t bytes) : name_(name), bytes_(bytes) {
    storage_.assign(kAlign + kGuard + bytes + kGuard, kPoison);
    const uintptr_t raw = reinterpret_cast<uintptr_t>(storage_.data()) + kGuard;
    data_ = reinterpret_cast<unsigned char*>((raw + kAlign - 1) / kAlign * kAlign);
    registry().insert(this);
  }
  ~Buffer() { registry().erase(this); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() { return data_; }
  size_t bytes() const { return bytes_; }
  template <class T> T* as() { return reinterpret_cast<T*>(data_); }
  template <class T> const T* as() const { return reinterpret_cast<const T*>(data_); }
  template <class T> void put(const std::vector<T>& v) {
    if (v.size() * sizeof(T) != bytes_) std::abort();
    std::memcpy(data_, v.data(), bytes_);
  }
  template <class T> std::vector<T> get() const {
    std::vector<T> v(bytes_ / sizeof(T));
    std::memcpy(v.data(), data_, v.size() * sizeof(T));
    return v;
  }
  void poison() { std::memset(data_, kPoison, bytes_); }
  bool guards_intact() const {
    for (const unsigned char* p = data_ - kGuard; p < data_; ++p) if (*p != kPoison) return false;
    for (const unsigned char* p = data_ + bytes_; p < data_ + bytes_ + kGuard; ++p) if (*p != kPoison) return false;
    return true;
  }
  const char* name() const { return name_; }

  static std::set<Buffer*>& registry() {
    static std::set<Buffer*> r;
    return r;
  }

 private:
  const char* name_;
  size_t bytes_;
  std::vector<unsigned char> storage_;
  unsigned char* data_;
};

template <class T>
struct Array : Buffer {
  Array(const char* name, size_t n) : Buffer(name, n * sizeof(T)) {}
  Array(const char* name, const std::vector<T>& v) : Buffer(name, v.size() * sizeof(T)) { put(v); }
  T* p() { return as<T>(); }
  std::vector<T> vec() const { return get<T>(); }
};

// The names of the live buffers whose guard zones were written: "" when none.
inline std::string clobbered_guards() {
  std::string s;
  for (const Buffer* b : Buffer::registry()) {
    if (!b->guards_intact()) s += std::string(s.empty() ? "" : ", ") + b->name();
  }
  return s;
}

// max |a - b| / max(1, |b|); NaN anywhere gives NaN.
template <class T, class U>
double max_rel_err(const T* a, const U* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) {
    const double x = double(a[i]), y = double(b[i]);
    const double d = std::fabs(x - y) / std::max(1.0, std::fabs(y));
    if (!(d <= m)) m = d;  // keeps NaN
  }
  return m;
}
template <class T, class U>
double max_rel_err(const std::vector<T>& a, const std::vector<U>& b) {
  if (a.size() != b.size()) return INFINITY;
  return max_rel_err(a.data(), b.data(), a.size());
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Case bookkeeping and the summary line.
class Report {
 public:
  explicit Report(const char* name) : name_(name) {}
  void pass() { ++cases_; }
  // A passed case, named on stdout under EMU_VERBOSE.
  void pass(const char* name) {
    if (std::getenv("EMU_VERBOSE")) std::printf("ok   %s\n", name);
    pass();
  }
  void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    ++cases_;
    ++failed_;
    if (failed_ > 40) return;  // the count in the summary says the rest
    std::printf("FAIL ");
    va_list ap;
    va_start(ap, fmt);
    std::vprintf(fmt, ap);
    va_end(ap);
    std::printf("\n");
    std::fflush(stdout);
  }
  // A check that is not a case of its own (coverage of a code path, say).
  void require(bool ok, const char* what) {
    if (!ok) {
      ++failed_checks_;
      std::printf("FAIL %s\n", what);
    }
  }
  int cases() const { return cases_; }
  int finish(const std::string& detail) const {
    const emu::Stats& s = emu::stats();
    if (failed_ == 0 && failed_checks_ == 0 && cases_ > 0) {
      std::printf("%s: PASS %d cases (%s; %ld launches, %ld blocks, %ld barriers, %ld warp ops)\n",
                  name_, cases_, detail.c_str(), s.launches, s.blocks, s.barriers, s.shuffles);
      return 0;
    }
    std::printf("%s: FAIL %d of %d cases, %d other checks (%s)\n", name_, failed_, cases_,
                failed_checks_, detail.c_str());
    return 1;
  }

 private:
  const char* name_;
  int cases_ = 0, failed_ = 0, failed_checks_ = 0;
};

// Sets the emulator's scheduling for a scope.
struct Schedule {
  emu::Order block, thread;
  const char* name;
};
constexpr Schedule kSchedules[] = {
    {emu::Order::kForward, emu::Order::kForward, "forward"},
    {emu::Order::kReverse, emu::Order::kReverse, "reverse"},
    {emu::Order::kShuffle, emu::Order::kShuffle, "shuffled"},
};
struct ScopedSchedule {
  emu::Options saved;
  explicit ScopedSchedule(const Schedule& s) : saved(emu::options()) {
    emu::options().block_order = s.block;
    emu::options().thread_order = s.thread;
  }
  ~ScopedSchedule() { emu::options() = saved; }
};

}  // namespace drv
