/* Responses that ballast writes itself. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/version.h"
#include "http/response.h"

int bl_http_status_takes_added_fields(int status)
{
    switch (status) {
    case 200: case 201: case 204: case 206:
    case 301: case 302: case 303: case 304: case 307: case 308:
        return 1;
    default:
        return 0;
    }
}

int bl_http_status_ends_connection(int status)
{
    switch (status) {
    case 400: case 408: case 413: case 414: case 431: case 494:
    case BL_HTTP_SSL_CERT_ERROR: case BL_HTTP_SSL_NO_CERT: case 497:
    case 500: case 501:
        return 1;
    default:
        return 0;
    }
}

const char *bl_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Moved Temporarily";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Not Allowed";
    case 408: return "Request Time-out";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Large";
    case 416: return "Requested Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Temporarily Unavailable";
    case 504: return "Gateway Time-out";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* The Date line, formatted once per second per thread: a thread-local, see
 * docs/internals.md, "Per-thread state". The wall clock is read when the line is made, and the
 * line stands until the thread's cached monotonic clock (bl_clock_us, read once per loop turn)
 * reaches the end of that wall second: one clock_gettime a second instead of one per response
 * (the vDSO read was 0.3% of a worker's CPU at 200 connections). A step of the wall clock
 * shows from the next second on. */
static _Thread_local char date_line[64];
static _Thread_local size_t date_len;
static _Thread_local uint64_t date_until_us; /* monotonic: the line's second ends */

const char *bl_http_date_header(size_t *len)
{
    uint64_t mono = bl_clock_us;
    if (mono >= date_until_us || !date_len) {
        uint64_t wall = bl_wall_us();
        time_t now = (time_t)(wall / 1000000);
        struct tm tm;
        gmtime_r(&now, &tm);
        date_len = strftime(date_line, sizeof(date_line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n",
                            &tm);
        date_until_us = mono + (1000000 - wall % 1000000);
    }
    *len = date_len;
    return date_line;
}

const char *bl_http_server_name(int server_tokens)
{
    return server_tokens ? BL_SERVER_TOKENS_ON : BL_SERVER_TOKENS_OFF;
}

size_t bl_http_build_response(char *out, size_t cap, int status, const char *body,
                              size_t body_len, const char *location, size_t location_len,
                              int keep_alive, int http10, int head, int retry_after,
                              int server_tokens, size_t *body_bytes)
{
    char page[512];
    const char *type = "text/plain";
    const char *server = bl_http_server_name(server_tokens);
    if (body_bytes)
        *body_bytes = 0;
    if (status == BL_HTTP_SSL_CERT_ERROR || status == BL_HTTP_SSL_NO_CERT) {
        /* nginx's 495 and 496 go out as 400 with a page that says which */
        const char *what = status == BL_HTTP_SSL_NO_CERT ? "No required SSL certificate was sent"
                                                         : "The SSL certificate error";
        status = 400;
        if (!body) {
            body_len = (size_t)snprintf(page, sizeof(page),
                                        "<html>\r\n<head><title>400 %s</title></head>\r\n"
                                        "<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
                                        "<center>%s</center>\r\n<hr><center>%s</center>\r\n"
                                        "</body>\r\n</html>\r\n", what, what, server);
            body = page;
            type = "text/html";
        }
    }
    if (!body) {
        body_len = (size_t)snprintf(page, sizeof(page),
                                    "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
                                    "<center><h1>%d %s</h1></center>\r\n"
                                    "<hr><center>%s</center>\r\n</body>\r\n</html>\r\n",
                                    status, bl_http_reason(status), status,
                                    bl_http_reason(status), server);
        body = page;
        type = "text/html";
    }
    int no_body = (status >= 100 && status < 200) || status == 204 || status == 304;
    size_t dlen;
    const char *date = bl_http_date_header(&dlen);
    int n = snprintf(out, cap, "HTTP/1.1 %d %s\r\nServer: %s\r\n%.*s", status,
                     bl_http_reason(status), server, (int)dlen, date);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t pos = (size_t)n;
    if (!no_body) {
        n = snprintf(out + pos, cap - pos, "Content-Type: %s\r\nContent-Length: %zu\r\n", type,
                     body_len);
        if (n < 0 || (pos += (size_t)n) >= cap)
            return 0;
    }
    if (location) {
        n = snprintf(out + pos, cap - pos, "Location: %.*s\r\n", (int)location_len, location);
        if (n < 0 || (pos += (size_t)n) >= cap)
            return 0;
    }
    if (retry_after) {
        n = snprintf(out + pos, cap - pos, "Retry-After: %d\r\n", retry_after);
        if (n < 0 || (pos += (size_t)n) >= cap)
            return 0;
    }
    const char *conn = keep_alive ? (http10 ? "Connection: keep-alive\r\n" : "")
                                  : "Connection: close\r\n";
    n = snprintf(out + pos, cap - pos, "%s\r\n", conn);
    if (n < 0 || (pos += (size_t)n) >= cap)
        return 0;
    if (!no_body && !head) {
        if (pos + body_len > cap)
            return 0;
        memcpy(out + pos, body, body_len);
        pos += body_len;
        if (body_bytes)
            *body_bytes = body_len;
    }
    return pos;
}
