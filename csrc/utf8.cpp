#include "utf8.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "unicode.hpp"

namespace instructfast::utf8 {

namespace {

constexpr uint64_t kHighBits = 0x8080808080808080ull;
// Rows per scheduling unit of check_array (as compute_text_stats).
constexpr int64_t kChunkRows = 256;

inline bool in(uint8_t b, uint8_t lo, uint8_t hi) { return b >= lo && b <= hi; }

// Bytes of the maximal invalid subpart starting at s[i], where decoding failed: the lead
// byte plus the continuation bytes that could still have completed it (>= 1).
size_t invalid_length(const uint8_t* s, size_t n, size_t i) {
  const uint8_t b0 = s[i];
  uint8_t lo = 0x80, hi = 0xBF;
  size_t need;  // continuation bytes of a complete sequence
  if (in(b0, 0xC2, 0xDF)) {
    need = 1;
  } else if (in(b0, 0xE0, 0xEF)) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (in(b0, 0xF0, 0xF4)) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  if (i + 1 >= n || !in(s[i + 1], lo, hi)) return 1;
  size_t k = 2;
  while (k < need + 1 && i + k < n && unicode::is_continuation(s[i + k])) ++k;
  return std::min(k, need);  // a complete sequence would have decoded
}

inline bool encoded_surrogate(const uint8_t* s, size_t n, size_t i) {
  return s[i] == 0xED && i + 2 < n && in(s[i + 1], 0xA0, 0xBF) && in(s[i + 2], 0x80, 0xBF);
}

}  // namespace

int64_t first_invalid(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    // ASCII runs eight bytes at a time: the common case costs one load and test per word.
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if ((w & kHighBits) == 0) {
        i += 8;
        continue;
      }
    }
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    const size_t start = i;
    if (unicode::decode(s, n, i) == unicode::kInvalid) return int64_t(start);
  }
  return -1;
}

std::string replace_invalid(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  std::string out;
  out.reserve(n + 8);
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      out.push_back(char(s[i++]));
      continue;
    }
    const size_t start = i;
    if (unicode::decode(s, n, i) != unicode::kInvalid) {
      out.append(text.data() + start, i - start);
      continue;
    }
    i = start + (encoded_surrogate(s, n, start) ? 3 : invalid_length(s, n, start));
    out.append("\xEF\xBF\xBD");
  }
  return out;
}

int64_t check_array(const ArrowStringArray& rows, int64_t* out, int threads) {
  const int64_t n = rows.size();
  const int64_t n_chunks = (n + kChunkRows - 1) / kChunkRows;
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, std::max<int64_t>(n_chunks, 1)));
  std::atomic<int64_t> next_chunk{0};
  std::atomic<int64_t> bad{0};
  auto worker = [&]() {
    int64_t local = 0;
    for (int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed); c < n_chunks;
         c = next_chunk.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t end = std::min(n, (c + 1) * kChunkRows);
      for (int64_t i = c * kChunkRows; i < end; ++i) {
        if (!rows.is_valid(i)) {
          out[i] = -1;
          continue;
        }
        const std::string_view v = rows.value(i);
        out[i] = first_invalid(reinterpret_cast<const uint8_t*>(v.data()), v.size());
        local += out[i] >= 0;
      }
    }
    bad.fetch_add(local, std::memory_order_relaxed);
  };
  if (threads == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(size_t(threads - 1));
    for (int t = 1; t < threads; ++t) {
      try {
        pool.emplace_back(worker);
      } catch (const std::system_error&) {
        break;  // fewer threads than asked for is still correct
      }
    }
    worker();
    for (std::thread& th : pool) th.join();
  }
  return bad.load();
}

}  // namespace instructfast::utf8
