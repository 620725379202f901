/* The last words of a crashing process: on SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT one line
 * goes to the error log, naming the thread (worker N or the control thread) and the signal,
 * and the signal then takes its previous course (the default action: a core dump where
 * enabled; under ASan, ASan's report). Only async-signal-safe calls run in the handler. */
#ifndef BL_CORE_CRASH_H
#define BL_CORE_CRASH_H

/* Installs the handlers. Call once, on the main thread, after the error log is open and before
 * any thread starts (threads share the dispositions). */
void bl_crash_handlers_install(void);

/* Formats the line the handler writes, into buf (at least 160 bytes); returns its length.
 * For tests; async-signal-safe. now: seconds since the epoch, local time offset applied. */
int bl_crash_format(char *buf, int signo, long long now, int pid, int thread_id);

#endif
