/* loopcall: another thread (the admin port) runs a function on the event
 * loop and waits for it, bounded in time.  Loop state is only ever touched
 * by the loop; this is how the admin thread asks it for something. */
#pragma once

#include <uv.h>

struct loopcall;

typedef void (*loopcall_fn)(void *data);

int loopcall_new(uv_loop_t *loop, struct loopcall **out);
/* Runs FN(DATA) on the loop and waits for it: 0 once it ran; -ETIMEDOUT if
 * the loop did not start it within TIMEOUT_MS (it then never runs);
 * -ESHUTDOWN once the loop is closing. */
int loopcall_run(struct loopcall *lc, loopcall_fn fn, void *data, int timeout_ms);
/* Runs FN(DATA) on the loop later, without waiting: 0, or -ESHUTDOWN once
 * the loop is closing (FN then never runs). */
int loopcall_post(struct loopcall *lc, loopcall_fn fn, void *data);
/* On the loop, before it ends: waiting callers get -ESHUTDOWN. */
void loopcall_close(struct loopcall *lc);
/* After the loop has ended and no other thread can call in. */
void loopcall_free(struct loopcall *lc);
