// dp_comm_checksum: FNV-1a 64 against published test vectors, and sensitivity to one bit.
// dp_comm_check_equal across ranks is in test_comm_mpi.c.
#include <criterion/criterion.h>
#include <string.h>

#include "comm/comm.h"

Test(checksum, fnv1a64_test_vectors)
{
    cr_expect_eq(dp_comm_checksum("", 0), 0xcbf29ce484222325ull);
    cr_expect_eq(dp_comm_checksum("a", 1), 0xaf63dc4c8601ec8cull);
    cr_expect_eq(dp_comm_checksum("foobar", 6), 0x85944171f73967e8ull);
}

Test(checksum, one_flipped_bit_changes_it)
{
    float w[1000];
    for (int i = 0; i < 1000; i++) {
        w[i] = (float)i * 0.001f;
    }
    uint64_t h = dp_comm_checksum(w, sizeof w);
    cr_expect_eq(dp_comm_checksum(w, sizeof w), h, "deterministic");
    unsigned char *bytes = (unsigned char *)w;
    bytes[2345] ^= 0x10;
    cr_expect_neq(dp_comm_checksum(w, sizeof w), h);
    bytes[2345] ^= 0x10;
    cr_expect_neq(dp_comm_checksum(w, sizeof w - 1), h, "length matters");
}
