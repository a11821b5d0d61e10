/* A small pthread pool for password hashing, so a slow hash (ARGON2ID,
   ~100 ms) never blocks the event loop. Work runs on a worker thread; its
   completion callback runs back on the event loop thread.
   Requires evthread_use_pthreads() before the event_base was created. */
#ifndef DOVEGATE_SHIM_WORKERS_H
#define DOVEGATE_SHIM_WORKERS_H

#include <stddef.h>

struct event_base;
struct workers;

typedef void workers_work_fn(void *arg);   /* worker thread: touch only arg */
typedef void workers_done_fn(void *arg);   /* event loop thread */

struct workers *workers_new(struct event_base *base, unsigned threads,
			    size_t max_queue, char *err, size_t errlen);
/* -1 if the queue is full (overload) or memory ran out. */
int workers_submit(struct workers *w, void *arg, workers_work_fn *work,
		   workers_done_fn *done);
/* Jobs queued or running. */
size_t workers_pending(struct workers *w);
/* Lets the threads finish every queued job, joins them, then runs the
   completions not yet delivered on the calling (event loop) thread. */
void workers_free(struct workers *w);

#endif
