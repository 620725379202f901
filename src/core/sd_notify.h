/* systemd's service notification protocol (sd_notify(3)) without libsystemd: one datagram
 * to the unix socket named by $NOTIFY_SOCKET, a path or, with a leading '@', a name in the
 * abstract namespace. */
#ifndef BL_CORE_SD_NOTIFY_H
#define BL_CORE_SD_NOTIFY_H

/* Sends state ("READY=1", "STOPPING=1", several "KEY=VALUE" lines joined by '\n'). Returns 1
 * when sent, 0 when $NOTIFY_SOCKET is unset or empty (not under systemd: nothing to do), -1
 * with errno set when it names no usable socket (EAFNOSUPPORT for a kind other than a path or
 * '@', ENAMETOOLONG) or sending failed. The variable is left in the environment, so that a
 * process this one executes (binary upgrade) can notify too. Any thread; blocking, but a
 * datagram to a local socket does not wait. */
int bl_sd_notify(const char *state);

#endif
