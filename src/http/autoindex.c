/* Directory listings, nginx's autoindex output byte for byte (autoindex.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/autoindex.h"

/* nginx's NGX_HTTP_AUTOINDEX_NAME_LEN: the width of the name column, in bytes (nginx counts
 * characters only with `charset utf-8`, which ballast does not have). */
#define NAME_COLUMN 50
/* The longest entry line: a 255-byte name escaped for the URI (x3) and for HTML or JSON
 * (x6), with the columns around it. */
#define ENTRY_MAX 2560

struct entry {
    uint32_t name;      /* offset in names */
    uint16_t len;
    uint8_t dir;        /* the name resolves to a directory (links followed) */
    uint8_t file;       /* ... to a regular file */
    int64_t mtime;
    int64_t size;
};

struct bl_autoindex {
    struct entry *e;
    uint32_t n, cap;
    char *names;
    size_t nlen, ncap;
    char *uri;
    size_t ulen;
    int json, exact_size;
    long shift;         /* seconds added to mtimes in the HTML page (autoindex_localtime) */
    uint64_t length;
    /* production: unit 0 is the head, 1..n the entries, n+1 the tail */
    uint32_t unit;
    char *scratch;      /* the unit being written */
    size_t scap, slen, soff;
};

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* RFC 3986's unreserved characters stay, every other byte is %XX (nginx's
 * NGX_ESCAPE_URI_COMPONENT). */
static size_t uri_escape(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    return k;
}

/* < > & " as entities (nginx's ngx_escape_html): a name cannot open a tag or leave an
 * attribute. */
static size_t html_escape(char *out, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *ent = NULL;
        switch (s[i]) {
        case '<':
            ent = "&lt;";
            break;
        case '>':
            ent = "&gt;";
            break;
        case '&':
            ent = "&amp;";
            break;
        case '"':
            ent = "&quot;";
            break;
        default:
            out[k++] = s[i];
            continue;
        }
        size_t el = strlen(ent);
        memcpy(out + k, ent, el);
        k += el;
    }
    return k;
}

/* \" and \\, control bytes as \u00XX (nginx's ngx_escape_json). */
static size_t json_escape(char *out, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c < 0x20) {
            k += (size_t)sprintf(out + k, "\\u%04X", c);
        } else {
            out[k++] = (char)c;
        }
    }
    return k;
}

/* nginx's size column without autoindex_exact_size: K, M, G rounded to nearest. */
static size_t human_size(char *out, int64_t len)
{
    const int64_t k = 1024, m = k * k, g = m * k;
    int64_t size;
    char scale;
    if (len >= g) {
        size = len / g + (len % g >= g / 2);
        scale = 'G';
    } else if (len >= m) {
        size = len / m + (len % m >= m / 2);
        scale = 'M';
    } else if (len > 9999) {
        size = len / k + (len % k >= k / 2);
        scale = 'K';
    } else {
        return (size_t)sprintf(out, " %6lld", (long long)len);
    }
    return (size_t)sprintf(out, "%6lld%c", (long long)size, scale);
}

static size_t html_entry(const struct bl_autoindex *a, const struct entry *e, char *out)
{
    const char *name = a->names + e->name;
    size_t len = e->len, k = 0;
    memcpy(out, "<a href=\"", 9);
    k += 9;
    k += uri_escape(out + k, name, len);
    if (e->dir)
        out[k++] = '/';
    out[k++] = '"';
    out[k++] = '>';
    /* the name column: 50 bytes, a longer name cut to 47 and "..>" */
    k += html_escape(out + k, name, len > NAME_COLUMN ? NAME_COLUMN - 3 : len);
    if (len > NAME_COLUMN) {
        memcpy(out + k, "..&gt;</a>", 10);
        k += 10;
    } else {
        if (e->dir && len < NAME_COLUMN) {
            out[k++] = '/';
            len++;
        }
        memcpy(out + k, "</a>", 4);
        k += 4;
        memset(out + k, ' ', NAME_COLUMN - len);
        k += NAME_COLUMN - len;
    }
    struct tm tm;
    time_t t = (time_t)(e->mtime + a->shift);
    gmtime_r(&t, &tm);
    k += (size_t)sprintf(out + k, " %02d-%s-%d %02d:%02d ", tm.tm_mday, months[tm.tm_mon],
                         tm.tm_year + 1900, tm.tm_hour, tm.tm_min);
    if (a->exact_size)
        k += e->dir ? (size_t)sprintf(out + k, "%19s", "-")
                    : (size_t)sprintf(out + k, "%19lld", (long long)e->size);
    else
        k += e->dir ? (size_t)sprintf(out + k, "%7s", "-") : human_size(out + k, e->size);
    memcpy(out + k, "\r\n", 2);
    return k + 2;
}

static size_t json_entry(const struct bl_autoindex *a, uint32_t i, char *out)
{
    const struct entry *e = &a->e[i];
    size_t k = (size_t)sprintf(out, "%s\r\n{ \"name\":\"", i ? "," : "");
    k += json_escape(out + k, a->names + e->name, e->len);
    struct tm tm;
    time_t t = (time_t)e->mtime;
    gmtime_r(&t, &tm);
    k += (size_t)sprintf(out + k, "\", \"type\":\"%s\", \"mtime\":\"",
                         e->dir ? "directory" : e->file ? "file" : "other");
    k += strftime(out + k, 64, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    out[k++] = '"';
    if (e->file && !e->dir)
        k += (size_t)sprintf(out + k, ", \"size\":%lld", (long long)e->size);
    memcpy(out + k, " }", 2);
    return k + 2;
}

/* Writes unit u (the head, an entry, the tail) into a->scratch: its length. */
static size_t format_unit(const struct bl_autoindex *a, uint32_t u, char *out)
{
    size_t k = 0;
    if (a->json) {
        if (u == 0)
            return (size_t)sprintf(out, "[");
        if (u <= a->n)
            return json_entry(a, u - 1, out);
        return (size_t)sprintf(out, "\r\n]");
    }
    if (u == 0) {
        k += (size_t)sprintf(out, "<html>\r\n<head><title>Index of ");
        k += html_escape(out + k, a->uri, a->ulen);
        k += (size_t)sprintf(out + k, "</title></head>\r\n<body>\r\n<h1>Index of ");
        k += html_escape(out + k, a->uri, a->ulen);
        k += (size_t)sprintf(out + k, "</h1><hr><pre><a href=\"../\">../</a>\r\n");
        return k;
    }
    if (u <= a->n)
        return html_entry(a, &a->e[u - 1], out);
    return (size_t)sprintf(out, "</pre><hr></body>\r\n</html>\r\n");
}

/* nginx's order: directories first, then by name, byte by byte. */
static int cmp_entries(const void *x, const void *y, void *arg)
{
    const struct entry *p = x, *q = y;
    if (p->dir != q->dir)
        return p->dir ? -1 : 1;
    const char *names = arg;
    return strcmp(names + p->name, names + q->name);
}

/* One directory entry: its name kept, its type and times from stat() (the link's own when
 * its target is missing, as nginx does). BL_OK-like 0, 1 to leave it out, -1 with errno. */
static int add_entry(struct bl_autoindex *a, int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, 0) != 0) {
        if (errno == EACCES)
            return 1;
        if ((errno != ENOENT && errno != ELOOP) ||
            fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            return -1;
    }
    size_t len = strlen(name);
    if (a->n == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 64;
        struct entry *e = realloc(a->e, cap * sizeof(*e));
        if (!e)
            return -1;
        a->e = e;
        a->cap = cap;
    }
    if (a->nlen + len + 1 > a->ncap) {
        size_t cap = a->ncap ? a->ncap * 2 : 4096;
        while (cap < a->nlen + len + 1)
            cap *= 2;
        char *p = realloc(a->names, cap);
        if (!p)
            return -1;
        a->names = p;
        a->ncap = cap;
    }
    if (a->cap * sizeof(struct entry) + a->ncap > BL_AUTOINDEX_MAX_BYTES) {
        errno = EFBIG;
        return -1;
    }
    memcpy(a->names + a->nlen, name, len + 1);
    a->e[a->n++] = (struct entry){.name = (uint32_t)a->nlen, .len = (uint16_t)len,
                                  .dir = S_ISDIR(st.st_mode), .file = S_ISREG(st.st_mode),
                                  .mtime = (int64_t)st.st_mtime, .size = (int64_t)st.st_size};
    a->nlen += len + 1;
    return 0;
}

static int read_dir(struct bl_autoindex *a, int dfd)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        errno = e;
        return -1;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            rc = errno ? -1 : 0;
            break;
        }
        if (de->d_name[0] == '.') /* dotfiles, ".", "..": nginx lists none */
            continue;
        if (add_entry(a, dirfd(d), de->d_name) < 0) {
            rc = -1;
            break;
        }
    }
    int e = errno;
    closedir(d);
    errno = e;
    return rc;
}

struct bl_autoindex *bl_autoindex_open(int dfd, const char *uri, size_t ulen, int json,
                                       int exact_size, int localtime)
{
    struct bl_autoindex *a = calloc(1, sizeof(*a));
    if (!a) {
        close(dfd);
        errno = ENOMEM;
        return NULL;
    }
    a->json = json;
    a->exact_size = exact_size;
    if (localtime) {
        /* nginx shifts every mtime by the offset in force now, not the one at that mtime */
        time_t now = time(NULL);
        struct tm lt;
        localtime_r(&now, &lt);
        a->shift = lt.tm_gmtoff;
    }
    a->scap = ENTRY_MAX + 128 + 12 * ulen;
    if (!(a->uri = malloc(ulen + 1)) || !(a->scratch = malloc(a->scap))) {
        close(dfd);
        bl_autoindex_free(a);
        errno = ENOMEM;
        return NULL;
    }
    memcpy(a->uri, uri, ulen);
    a->uri[ulen] = '\0';
    a->ulen = ulen;
    if (read_dir(a, dfd) != 0) {
        int e = errno;
        bl_autoindex_free(a);
        errno = e;
        return NULL;
    }
    if (a->n > 1)
        qsort_r(a->e, a->n, sizeof(a->e[0]), cmp_entries, a->names);
    for (uint32_t u = 0; u <= a->n + 1; u++)
        a->length += format_unit(a, u, a->scratch);
    return a;
}

uint64_t bl_autoindex_length(const struct bl_autoindex *a)
{
    return a->length;
}

size_t bl_autoindex_fill(struct bl_autoindex *a, char *buf, size_t cap)
{
    size_t k = 0;
    while (k < cap) {
        if (a->soff == a->slen) {
            if (a->unit > a->n + 1)
                break;
            a->slen = format_unit(a, a->unit++, a->scratch);
            a->soff = 0;
        }
        size_t m = a->slen - a->soff < cap - k ? a->slen - a->soff : cap - k;
        memcpy(buf + k, a->scratch + a->soff, m);
        a->soff += m;
        k += m;
    }
    return k;
}

void bl_autoindex_free(struct bl_autoindex *a)
{
    if (!a)
        return;
    free(a->e);
    free(a->names);
    free(a->uri);
    free(a->scratch);
    free(a);
}
