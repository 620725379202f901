/* Strings with nginx variables ("$host", "${arg_id}x", "$http_user_agent"), compiled once at
 * config load and evaluated per request without allocation.
 *
 * Variables: $host $http_host $remote_addr $remote_port $proxy_add_x_forwarded_for $scheme
 * $request_uri $uri $document_uri $args $query_string $is_args $request_method $request
 * $server_protocol $server_port $server_addr $hostname $msec $proxy_host $proxy_port $http_NAME
 * $arg_NAME $cookie_NAME.
 * $http_NAME matches the header NAME with '_' standing for '-', case-insensitively.
 */
#ifndef BL_HTTP_TEMPLATE_H
#define BL_HTTP_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

struct bl_h1_message;

/* What a template is evaluated against. Strings need not be NUL-terminated. */
struct bl_var_ctx {
    const struct bl_h1_message *req;
    const char *uri;                /* $uri: the normalized path (NULL: the path as sent) */
    uint32_t uri_len;
    const char *client_ip;          /* "127.0.0.1" */
    uint32_t client_ip_len;
    uint16_t client_port;
    uint16_t server_port;
    int fd;                         /* client socket, for $server_addr (-1: unknown) */
    const char *proxy_host;         /* $proxy_host, $proxy_port: the location's proxy_pass as */
    const char *proxy_port;         /* nginx gives them ("app", "80"); NULL: empty */
};

struct bl_template;

/* Compiles text. Returns NULL with err filled (`unknown "foo" variable`, `invalid variable
 * name`) or out of memory. Control thread. */
struct bl_template *bl_template_compile(const char *text, char *err, size_t errlen);
void bl_template_free(struct bl_template *t);

/* 1 when the template has no variables (its text is constant). */
int bl_template_is_constant(const struct bl_template *t);
/* The text as written (constant templates: the value). */
const char *bl_template_text(const struct bl_template *t, size_t *len);

/* Writes the value into out (up to cap bytes) and returns its full length, which may exceed
 * cap (then out holds a truncated value; call again with a bigger buffer). Any thread. */
size_t bl_template_eval(const struct bl_template *t, const struct bl_var_ctx *ctx, char *out,
                        size_t cap);

#endif
