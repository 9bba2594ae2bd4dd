// main() of the tests that run only inside the QEMU NVMe guest
// (scripts/nvme-qemu-test.sh sets RINGLINE_IN_QEMU=1 there): anywhere else
// they print SKIPPED and exit 77, ctest's skip code for them.
#ifndef RINGLINE_TESTS_BLOCK_GUEST_TEST_MAIN_H_
#define RINGLINE_TESTS_BLOCK_GUEST_TEST_MAIN_H_

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  const char* in_qemu = std::getenv("RINGLINE_IN_QEMU");
  if (in_qemu == nullptr || std::strcmp(in_qemu, "1") != 0) {
    std::printf("SKIPPED: needs RINGLINE_IN_QEMU (run scripts/nvme-qemu-test.sh)\n");
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

#endif  // RINGLINE_TESTS_BLOCK_GUEST_TEST_MAIN_H_
