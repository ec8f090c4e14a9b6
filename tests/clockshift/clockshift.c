/*
 * clockshift: moves the wall clock of a process (and of every process it
 * starts) by CLOCKSHIFT_SECONDS, for running the test suite "on another day".
 *
 * Loaded with LD_PRELOAD. Only reads of the wall clock are shifted:
 * clock_gettime(CLOCK_REALTIME[_COARSE]), gettimeofday() and time(). So
 * Python's datetime.now() and time.time(), the certificates the tests make,
 * and the TLS library's check of certificate validity all see the shifted
 * date. Monotonic clocks, sleeps and timed waits are left alone: Python 3.11,
 * grpc and asyncio time their waits on CLOCK_MONOTONIC, so nothing waits for
 * the shift to pass. (Debian's libfaketime also intercepts sleeps and waits;
 * with Python 3.11 that makes time.sleep fail with EINVAL or timed waits hang,
 * which is why the suite does not use it.)
 *
 * Build: cc -shared -fPIC -O2 -o clockshift.so clockshift.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long shift;
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_gettimeofday)(struct timeval *, void *);
static time_t (*real_time)(time_t *);

__attribute__((constructor)) static void clockshift_init(void) {
    const char *value = getenv("CLOCKSHIFT_SECONDS");
    shift = value ? atoll(value) : 0;
    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    real_gettimeofday = (int (*)(struct timeval *, void *))dlsym(RTLD_NEXT, "gettimeofday");
    real_time = (time_t (*)(time_t *))dlsym(RTLD_NEXT, "time");
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    if (!real_clock_gettime) clockshift_init();
    int rc = real_clock_gettime(clock, ts);
    if (rc == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) ts->tv_sec += shift;
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    if (!real_gettimeofday) clockshift_init();
    int rc = real_gettimeofday(tv, tz);
    if (rc == 0) tv->tv_sec += shift;
    return rc;
}

time_t time(time_t *out) {
    if (!real_time) clockshift_init();
    time_t now = real_time((time_t *)0) + shift;
    if (out) *out = now;
    return now;
}
