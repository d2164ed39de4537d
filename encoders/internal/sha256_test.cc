#include "encoders/internal/sha256.h"

#include <string>

#include <gtest/gtest.h>

namespace rotor::encoders::internal {
namespace {

// FIPS 180-4 / NIST CSRC example vectors.
TEST(Sha256Test, EmptyString) {
  EXPECT_EQ(Sha256Hex(std::string_view()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Test, Abc) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, TwoBlockMessage448Bits) {
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, FourBlockMessage896Bits) {
  EXPECT_EQ(Sha256Hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                      "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256Test, OneMillionA) {
  EXPECT_EQ(Sha256Hex(std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, IncrementalUpdatesInAnyChunkingGiveTheOneShotDigest) {
  std::string message;
  for (int i = 0; i < 300; ++i) {
    message.push_back(static_cast<char>(i * 7 + 3));
  }
  const std::string want = Sha256Hex(message);
  // Chunk sizes around the 64-byte block and the 56-byte padding boundary.
  for (const std::size_t chunk : {1U, 3U, 55U, 56U, 57U, 63U, 64U, 65U, 128U, 299U}) {
    Sha256 hasher;
    for (std::size_t pos = 0; pos < message.size(); pos += chunk) {
      hasher.Update(std::string_view(message).substr(pos, chunk));
    }
    EXPECT_EQ(ToHex(hasher.Finish()), want) << "chunk " << chunk;
  }
}

TEST(Sha256Test, LengthsAroundThePaddingBoundary) {
  // Known digests of 'a' * n for n = 55, 56, 63, 64 (python hashlib).
  EXPECT_EQ(Sha256Hex(std::string(55, 'a')),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(Sha256Hex(std::string(56, 'a')),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(Sha256Hex(std::string(63, 'a')),
            "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34");
  EXPECT_EQ(Sha256Hex(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(Sha256Test, ResetStartsOver) {
  Sha256 hasher;
  hasher.Update("garbage");
  hasher.Reset();
  hasher.Update("abc");
  EXPECT_EQ(ToHex(hasher.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace rotor::encoders::internal
