#!/bin/sh
# keepalived track script: exits 0 while ballast's admin API says it is healthy
# (GET /api/health: 200 when every upstream has a server in state up, 503 otherwise).
# Usage: check_ballast.sh [ADMIN_URL] [TOKEN_FILE]   (defaults: http://127.0.0.1:9901, none)
# A token file that does not exist is skipped, so one script serves both kinds of admin block.
url=${1:-http://127.0.0.1:9901}
token=${2:-}
if [ -n "$token" ] && [ -r "$token" ]; then
    exec curl -sf -o /dev/null -m 0.8 -H "Authorization: Bearer $(head -n1 "$token")" "$url/api/health"
fi
exec curl -sf -o /dev/null -m 0.8 "$url/api/health"
