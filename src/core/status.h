/* Status codes shared by every module (nginx NGX_OK/NGX_ERROR/NGX_AGAIN). */
#ifndef BL_CORE_STATUS_H
#define BL_CORE_STATUS_H

#define BL_OK     0   /* done */
#define BL_ERR   -1   /* failed or invalid; see the module's error report */
#define BL_AGAIN -2   /* incomplete: call again with more input or when the fd is ready */

#define BL_UNUSED(x) ((void)(x))
#define BL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define bl_likely(x)   __builtin_expect(!!(x), 1)
#define bl_unlikely(x) __builtin_expect(!!(x), 0)

#endif
