/* k2: glibc's C11 cnd_timedwait waits inside libc, where libfaketime cannot see it, for an absolute
 * time the caller computed from its faked clock: a process skewed forward by N s then sleeps N s in every
 * timed wait (librdkafka's broker and poll loops stall). Route it through pthread_cond_timedwait, which
 * libfaketime translates to the real clock. glibc's cnd_t and mtx_t are pthread_cond_t and pthread_mutex_t. */
#include <errno.h>
#include <pthread.h>
#include <threads.h>

int cnd_timedwait(cnd_t *restrict cond, mtx_t *restrict mutex, const struct timespec *restrict ts) {
    switch (pthread_cond_timedwait((pthread_cond_t *)cond, (pthread_mutex_t *)mutex, ts)) {
    case 0: return thrd_success;
    case ETIMEDOUT: return thrd_timedout;
    case ENOMEM: return thrd_nomem;
    case EBUSY: return thrd_busy;
    default: return thrd_error;
    }
}
