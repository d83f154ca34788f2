// Replays a fuzz target's seed corpus as a normal test (`make test`, gcc):
// every file of the corpus directory given as the first argument goes
// through LLVMFuzzerTestOneInput once. An input that trips an invariant
// aborts the test, naming the file; the corpus keeps every input that once
// found a bug, so this is also the regression test for those bugs.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string g_corpus_dir;

std::vector<std::filesystem::path> CorpusFiles(const std::string& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(FuzzCorpus, ReplaysEveryInput) {
  ASSERT_FALSE(g_corpus_dir.empty()) << "usage: corpus_replay_test CORPUS_DIR";
  ASSERT_TRUE(std::filesystem::is_directory(g_corpus_dir)) << g_corpus_dir;
  const std::vector<std::filesystem::path> files = CorpusFiles(g_corpus_dir);
  ASSERT_FALSE(files.empty()) << "no seed inputs in " << g_corpus_dir;
  for (const std::filesystem::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    ASSERT_TRUE(in) << file;
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Printed first: an invariant that aborts names the input that broke it.
    std::fprintf(stderr, "replaying %s (%zu bytes)\n", file.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  RecordProperty("inputs", static_cast<int>(files.size()));
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) g_corpus_dir = argv[1];
  return RUN_ALL_TESTS();
}
