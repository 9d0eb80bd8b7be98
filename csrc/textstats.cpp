#include "textstats.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <limits>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "mtld.hpp"
#include "unicode.hpp"

namespace instructfast {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Rows per scheduling unit: large enough to amortise the atomic, small enough to
// balance rows whose lengths differ by orders of magnitude.
constexpr int64_t kChunkRows = 64;

void stats_for_row(const ArrowStringArray& rows, int64_t i, const TextStatsColumns& out, double threshold,
                   bool with_mtld, MtldWorkspace& ws) {
  if (!rows.is_valid(i)) {
    out.valid[i] = false;
    out.words[i] = 0;
    out.unique_words[i] = 0;
    out.ttr[i] = kNaN;
    out.mtld[i] = kNaN;
    out.chars[i] = 0;
    out.bytes[i] = 0;
    out.utf8_error[i] = -1;
    return;
  }
  const std::string_view text = rows.value(i);
  ws.tokenize(text);
  out.valid[i] = true;
  out.words[i] = int64_t(ws.words());
  out.unique_words[i] = int64_t(ws.unique_words());
  out.ttr[i] = ws.ttr();
  out.mtld[i] = with_mtld ? ws.mtld(threshold) : kNaN;
  out.chars[i] = int64_t(unicode::count_code_points(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  out.bytes[i] = int64_t(text.size());
  out.utf8_error[i] = ws.first_invalid();
}

}  // namespace

void compute_text_stats(const ArrowStringArray& rows, const TextStatsColumns& out, double threshold,
                        bool with_mtld, int threads) {
  check_threshold(threshold);
  const int64_t n = rows.size();
  const int64_t n_chunks = (n + kChunkRows - 1) / kChunkRows;
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, std::max<int64_t>(n_chunks, 1)));

  std::atomic<int64_t> next_chunk{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&]() {
    try {
      MtldWorkspace ws;
      for (int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed); c < n_chunks;
           c = next_chunk.fetch_add(1, std::memory_order_relaxed)) {
        const int64_t end = std::min(n, (c + 1) * kChunkRows);
        for (int64_t i = c * kChunkRows; i < end; ++i) stats_for_row(rows, i, out, threshold, with_mtld, ws);
      }
    } catch (...) {
      // Stop everyone and report the first failure on the calling thread.
      next_chunk.store(n_chunks);
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
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
    worker();  // the calling thread works too
    for (std::thread& th : pool) th.join();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace instructfast
