/* nginx's stream preaccess and access phases for a new session: limit_conn, then allow/deny
 * (the policies are in src/policy/). Internal to src/stream. */
#ifndef BL_STREAM_PREACCESS_H
#define BL_STREAM_PREACCESS_H

#include "conf/conf.h"
#include "core/sock.h"
#include "policy/limits.h"

/* For a session of srv from peer (ip its text): BL_OK, or BL_ERR with the status to log (503:
 * limit_conn, 403: denied) and the session to close. The counts taken go into held, to give
 * back with bl_limit_conn_release() when the session ends; *conn_status is
 * $limit_conn_status (enum bl_limit_status). Worker thread. */
int bl_stream_preaccess(const struct bl_stream_server *srv, const union bl_sockaddr *peer,
                        const char *ip, uint16_t server_port, struct bl_limit_held *held,
                        uint8_t *conn_status, int *status);

#endif
