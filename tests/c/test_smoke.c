/* test_smoke.c: the seed's example through pyalloc/windows.h. */
#include "ctest.h"
#include "pyalloc/windows.h"

TEST(seed_example_reserves_a_slot_commits_a_page)
{
    char *p = VirtualAlloc(NULL, 8, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    CHECK(p != NULL);
    CHECK_EQ((uintptr_t)p & 0xFFFF, 0);
    MEMORY_BASIC_INFORMATION m;
    CHECK_EQ(VirtualQuery(p, &m, sizeof m), sizeof m);
    CHECK_EQ(m.RegionSize, 0x1000);
    CHECK_EQ(m.State, MEM_COMMIT);
    CHECK_EQ(VirtualQuery(p + 0x1000, &m, sizeof m), sizeof m);
    CHECK_EQ(m.State, MEM_FREE);
    p[7] = 1;
    CHECK(VirtualFree(p, 0, MEM_RELEASE));
}

CTEST_MAIN()
