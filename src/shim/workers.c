#include "workers.h"

#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct job {
	struct job *next;
	void *arg;
	workers_work_fn *work;
	workers_done_fn *done;
};

struct job_list {
	struct job *head, **tail;
};

struct workers {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct job_list todo;           /* under lock */
	struct job_list finished;       /* under lock */
	size_t pending;                 /* under lock: queued + running + finished */
	size_t max_queue;
	bool stopping;                  /* under lock */
	struct event *finished_ev;      /* activated by workers */
	pthread_t *threads;
	unsigned nthreads;
};

static void list_init(struct job_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

static void list_push(struct job_list *l, struct job *j)
{
	j->next = NULL;
	*l->tail = j;
	l->tail = &j->next;
}

static struct job *list_pop(struct job_list *l)
{
	struct job *j = l->head;

	if (j != NULL) {
		l->head = j->next;
		if (l->head == NULL)
			l->tail = &l->head;
	}
	return j;
}

static void *worker_main(void *arg)
{
	struct workers *w = arg;
	struct job *j;

	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (!w->stopping && w->todo.head == NULL)
			pthread_cond_wait(&w->wake, &w->lock);
		j = list_pop(&w->todo);
		pthread_mutex_unlock(&w->lock);
		if (j == NULL)
			return NULL;    /* stopping and nothing left */
		j->work(j->arg);
		pthread_mutex_lock(&w->lock);
		list_push(&w->finished, j);
		pthread_mutex_unlock(&w->lock);
		/* thread-safe with evthread_use_pthreads(); wakes the loop */
		event_active(w->finished_ev, EV_READ, 0);
	}
}

/* Event loop thread: run the completion callbacks of all finished jobs. */
static void on_finished(evutil_socket_t fd, short what, void *arg)
{
	struct workers *w = arg;
	struct job_list done;
	struct job *j;

	pthread_mutex_lock(&w->lock);
	done = w->finished;
	if (done.head == NULL)
		done.tail = &done.head;
	list_init(&w->finished);
	pthread_mutex_unlock(&w->lock);
	while ((j = list_pop(&done)) != NULL) {
		pthread_mutex_lock(&w->lock);
		w->pending--;
		pthread_mutex_unlock(&w->lock);
		j->done(j->arg);
		free(j);
	}
}

/* Signals belong to the event loop thread. */
static int start_threads(struct workers *w, unsigned n)
{
	sigset_t all, old;
	int rc = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (w->nthreads = 0; w->nthreads < n; w->nthreads++) {
		rc = pthread_create(&w->threads[w->nthreads], NULL, worker_main, w);
		if (rc != 0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

struct workers *workers_new(struct event_base *base, unsigned threads,
			    size_t max_queue, char *err, size_t errlen)
{
	struct workers *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL || (w->threads = calloc(threads, sizeof(pthread_t))) == NULL ||
	    (w->finished_ev = event_new(base, -1, 0, on_finished, w)) == NULL) {
		snprintf(err, errlen, "out of memory");
		workers_free(w);
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	list_init(&w->todo);
	list_init(&w->finished);
	w->max_queue = max_queue;
	rc = start_threads(w, threads);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start hash threads: %s", strerror(rc));
		workers_free(w);
		return NULL;
	}
	return w;
}

int workers_submit(struct workers *w, void *arg, workers_work_fn *work,
		   workers_done_fn *done)
{
	struct job *j;

	pthread_mutex_lock(&w->lock);
	if (w->pending >= w->max_queue) {
		pthread_mutex_unlock(&w->lock);
		return -1;
	}
	pthread_mutex_unlock(&w->lock);
	j = malloc(sizeof(*j));
	if (j == NULL)
		return -1;
	j->arg = arg;
	j->work = work;
	j->done = done;
	pthread_mutex_lock(&w->lock);
	list_push(&w->todo, j);
	w->pending++;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

size_t workers_pending(struct workers *w)
{
	size_t n;

	pthread_mutex_lock(&w->lock);
	n = w->pending;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void workers_free(struct workers *w)
{
	struct job *j;

	if (w == NULL)
		return;
	if (w->threads != NULL && w->finished_ev != NULL) {
		pthread_mutex_lock(&w->lock);
		w->stopping = true;
		pthread_cond_broadcast(&w->wake);
		pthread_mutex_unlock(&w->lock);
		for (unsigned i = 0; i < w->nthreads; i++)
			pthread_join(w->threads[i], NULL);
		/* Threads finish the whole queue before they exit; deliver the
		   completions the loop has not run yet, so no job is lost. */
		while ((j = list_pop(&w->finished)) != NULL) {
			j->done(j->arg);
			free(j);
		}
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->wake);
	}
	if (w->finished_ev != NULL)
		event_free(w->finished_ev);
	free(w->threads);
	free(w);
}
