// Helpers shared by the fuzz targets of tests/fuzz/.
//
// FUZZ_CHECK(cond) << "context": an invariant the code under test must keep
// for every input. It is checked in every build (never compiled out like
// assert()) and aborts with the context, which both libFuzzer and the corpus
// replay test report as a failure.
//
// ByteReader: a tiny structured-input decoder over the fuzzer's bytes, so the
// targets also build with gcc (the corpus replay test) and do not need
// clang's <fuzzer/FuzzedDataProvider.h>. Reading past the end yields zeros
// and empty strings, so every input decodes to something.
#ifndef DISPATCHD_TESTS_FUZZ_FUZZ_CHECK_H_
#define DISPATCHD_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace dispatchd {
namespace fuzz {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond) {
    stream_ << file << ":" << line << ": invariant violated: " << cond << ": ";
  }
  [[noreturn]] ~CheckFailure() {
    const std::string text = stream_.str();
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return empty() ? 0 : size_ - pos_; }

  uint8_t Byte() { return empty() ? 0 : data_[pos_++]; }
  bool Bool() { return (Byte() & 1) != 0; }
  uint16_t U16() { return static_cast<uint16_t>(Byte() | (Byte() << 8)); }
  uint32_t U32() { return static_cast<uint32_t>(U16()) | (static_cast<uint32_t>(U16()) << 16); }
  uint64_t U64() { return static_cast<uint64_t>(U32()) | (static_cast<uint64_t>(U32()) << 32); }
  // A value in [0, n) (0 when n is 0).
  size_t Below(size_t n) { return n == 0 ? 0 : Byte() % n; }
  // A string of up to `max` bytes: one length byte, then that many bytes.
  std::string String(size_t max = 255) {
    size_t n = Byte();
    if (n > max) n = max;
    if (n > remaining()) n = remaining();
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  // Everything not read yet.
  std::string Rest() {
    std::string s(reinterpret_cast<const char*>(data_ + pos_), remaining());
    pos_ = size_;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace fuzz
}  // namespace dispatchd

// A loop, not an if/else, so that it nests in an unbraced if without a
// dangling else; it never loops, CheckFailure's destructor aborts.
#define FUZZ_CHECK(cond) \
  while (!(cond)) ::dispatchd::fuzz::CheckFailure(__FILE__, __LINE__, #cond).stream()

#endif  // DISPATCHD_TESTS_FUZZ_FUZZ_CHECK_H_
