/* ctest.h: a minimal C test harness. Each test is a function registered with TEST(); main()
 * comes from CTEST_MAIN(). CHECK records a failure and continues; the binary prints
 * "N passed, N failed" and exits non-zero if any test failed. */
#ifndef CTEST_H
#define CTEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*ctest_fn)(void);
struct ctest_case { const char *name; ctest_fn fn; };
extern struct ctest_case ctest_cases[];
extern int ctest_ncases;
static int ctest_failed_checks;

#define TEST(fn_)                                                                               \
    static void fn_(void);                                                                      \
    __attribute__((constructor)) static void register_##fn_(void)                               \
    {                                                                                            \
        ctest_cases[ctest_ncases].name = #fn_;                                                  \
        ctest_cases[ctest_ncases++].fn = fn_;                                                   \
    }                                                                                            \
    static void fn_(void)

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);           \
            ctest_failed_checks++;                                                               \
        }                                                                                        \
    } while (0)

#define CHECK_EQ(a, b)                                                                           \
    do {                                                                                         \
        unsigned long long ctest_a = (unsigned long long)(a), ctest_b = (unsigned long long)(b); \
        if (ctest_a != ctest_b) {                                                                \
            fprintf(stderr, "  %s:%d: %s == %s failed: 0x%llx != 0x%llx\n", __FILE__, __LINE__,  \
                    #a, #b, ctest_a, ctest_b);                                                   \
            ctest_failed_checks++;                                                               \
        }                                                                                        \
    } while (0)

#define CTEST_MAIN()                                                                             \
    struct ctest_case ctest_cases[1024];                                                         \
    int ctest_ncases;                                                                            \
    int main(int argc, char **argv)                                                              \
    {                                                                                            \
        int passed = 0, failed = 0;                                                              \
        for (int i = 0; i < ctest_ncases; i++) {                                                 \
            if (argc > 1 && !strstr(ctest_cases[i].name, argv[1])) continue;                     \
            int before = ctest_failed_checks;                                                    \
            ctest_cases[i].fn();                                                                 \
            if (ctest_failed_checks == before) passed++;                                         \
            else {                                                                               \
                failed++;                                                                        \
                fprintf(stderr, "FAIL %s\n", ctest_cases[i].name);                               \
            }                                                                                    \
        }                                                                                        \
        printf("%d passed, %d failed\n", passed, failed);                                        \
        return failed != 0;                                                                      \
    }
#endif
