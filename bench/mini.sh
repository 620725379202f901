# The start every one-feature comparison shares (static.sh, upstream_tls.sh):
# sourced with the script's short name after `cd` to the repository root. Gives TMP (removed
# on exit, with every process whose pid the script wrote to $TMP/NAME.pid), port (a free
# port on 127.0.0.1), $TMP/nginx, TEMPS (nginx's temp paths inside TMP, so an nginx started
# with -p $TMP writes nowhere else) and ROOT (`user root;` when run as root, since nginx
# would otherwise switch to nobody, who cannot read TMP).
TMP=$(mktemp -d "/tmp/bench-$1.XXXXXX")
trap 'kill $(cat $TMP/*.pid 2>/dev/null) 2>/dev/null || true; sleep 0.3; rm -rf "$TMP"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mkdir -p "$TMP/nginx"
TEMPS="client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx; fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;"
ROOT=$( [ "$(id -u)" = 0 ] && echo "user root;" || true )
