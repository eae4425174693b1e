// replay_main — runs a fuzz target without libFuzzer (g++ builds, ctest).
//
//   fuzz_<name>_replay [--mutations N] [FILE|DIR]...
//
// Runs the target on the empty input, on every file given (a directory: every
// regular file in it, in name order), then on N deterministic mutations of
// those inputs (fixed seed: a failure is reproducible, and the failing input is
// saved as ./replay-crash.bin). It is a
// regression check over the corpus plus a little cheap fuzzing; real fuzzing
// is the clang/libFuzzer build (see README.md).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const std::string* gCurrent = nullptr;

/// On abort (a FUZZ_CHECK or a sanitizer), saves the input that caused it.
/// Only async-signal-safe calls here.
extern "C" void saveCrash(int) {
  if (gCurrent != nullptr) {
    int fd = ::open("replay-crash.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      (void)!::write(fd, gCurrent->data(), gCurrent->size());
      ::close(fd);
    }
    const char msg[] = "replay: the failing input is in ./replay-crash.bin\n";
    (void)!::write(2, msg, sizeof msg - 1);
  }
  std::signal(SIGABRT, SIG_DFL);
  std::abort();
}

void run(const std::string& input) {
  gCurrent = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
  gCurrent = nullptr;
}

/// One random edit: flip, insert an interesting byte, erase, duplicate or splice.
void mutate(std::string& s, const std::vector<std::string>& corpus, std::mt19937& rng) {
  static const char kInteresting[] = {'\r', '\n', '.', '\0', ' ', '<', '>',    '@',    '"',   '\\',
                                      '=',  '+',  ':', '-',  '[', ']', '\x80', '\xC3', '\xFF'};
  auto pick = [&](std::size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  std::size_t pos = pick(s.size() + 1);
  switch (pick(5)) {
    case 0:
      if (!s.empty()) {
        s[pick(s.size())] ^= static_cast<char>(1u << pick(8));
      }
      break;
    case 1:
      s.insert(pos, 1, kInteresting[pick(sizeof kInteresting)]);
      break;
    case 2:
      s.erase(pos, pick(8) + 1);
      break;
    case 3:
      s.insert(pos, s.substr(pos, pick(16) + 1));
      break;
    default: {
      const std::string& other = corpus[pick(corpus.size())];
      std::size_t from = pick(other.size() + 1);
      s.insert(pos, other.substr(from, pick(32) + 1));
      break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGABRT, saveCrash);
  long mutations = 0;
  std::vector<std::string> corpus{""};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
      mutations = std::strtol(argv[++i], nullptr, 10);
      continue;
    }
    fs::path path(argv[i]);
    std::vector<fs::path> files;
    if (fs::is_directory(path)) {
      for (const auto& entry : fs::directory_iterator(path)) {
        if (entry.is_regular_file()) {
          files.push_back(entry.path());
        }
      }
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(path);
    }
    for (const auto& f : files) {
      corpus.push_back(readFile(f));
    }
  }
  for (const auto& input : corpus) {
    run(input);
  }
  std::mt19937 rng(12345);
  for (long m = 0; m < mutations; ++m) {
    std::string input = corpus[rng() % corpus.size()];
    for (unsigned edits = 1 + rng() % 4; edits > 0; --edits) {
      mutate(input, corpus, rng);
    }
    run(input);
  }
  std::printf("replayed %zu inputs and %ld mutations\n", corpus.size(), mutations);
  return 0;
}
