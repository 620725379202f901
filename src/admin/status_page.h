/* The status page served at GET /status (status_page.c). */
#ifndef BL_ADMIN_STATUS_PAGE_H
#define BL_ADMIN_STATUS_PAGE_H

/* The HTML document, NUL-terminated; its length without the NUL. Static, any thread. */
extern const char bl_status_page[];
extern const unsigned long bl_status_page_len;

#endif
