#!/usr/bin/env python3
"""Records where nginx sends keys and clients, for test_balancer_hash.c and
test_balancer_ip_hash.c: starts nginx (from PATH) on 127.0.0.1:27001-27005 and :27080 under a
temporary prefix, asks it, stops it, and prints nginx_golden.h to stdout.
    tests/unit/upstream/nginx_golden.py > tests/unit/upstream/nginx_golden.h
"""
import http.client, os, random, signal, subprocess, sys, tempfile, time
from urllib.parse import quote

SERVERS = """
        server 127.0.0.1:27001 weight=1; server 127.0.0.1:27002 weight=2;
        server 127.0.0.1:27003 weight=3; server 127.0.0.1:27004; server 127.0.0.1:27005 weight=2;"""
CONF = """
worker_processes 1; daemon on; pid %(p)s/nginx.pid; error_log %(p)s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(p)s; proxy_temp_path %(p)s; fastcgi_temp_path %(p)s;
    uwsgi_temp_path %(p)s; scgi_temp_path %(p)s;
    server { listen 127.0.0.1:27001; listen 127.0.0.1:27002; listen 127.0.0.1:27003;
             listen 127.0.0.1:27004; listen 127.0.0.1:27005;
             location / { return 200 "$server_port"; } }
    upstream up_hash  { hash $arg_k; %(s)s }
    upstream up_chash { hash $arg_k consistent; %(s)s }
    upstream up_ip    { ip_hash; %(s)s }
    server {
        listen 127.0.0.1:27080;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        location /h { proxy_pass http://up_hash; }
        location /c { proxy_pass http://up_chash; }
        location /i { proxy_pass http://up_ip; }
    }
}
"""
HEADER = """/* Where nginx %s sends keys and clients, recorded from the real thing by nginx_golden.py:
 * the server index for "hash $arg_k", "hash $arg_k consistent" and "ip_hash" (client address
 * set with realip's X-Real-IP) over these five servers, in this order:
 *     server 127.0.0.1:27001 weight=1;  server 127.0.0.1:27002 weight=2;
 *     server 127.0.0.1:27003 weight=3;  server 127.0.0.1:27004;  server 127.0.0.1:27005 weight=2;
 * Keys are as nginx hashed them ($arg_k is not URL-decoded). */
struct golden_key {
    const char *key;
    int server;
};
struct golden_ip {
    const char *addr;
    int server;
};
"""

def main():
    random.seed(7)
    keys = ["k%d" % i for i in range(400)]
    keys += ["/static/img/%d.png?v=%d" % (random.randrange(10**6), i) for i in range(300)]
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~"
    keys += ["".join(random.choice(alphabet) for _ in range(random.randrange(1, 60)))
             for _ in range(300)]
    ips = ["%d.%d.%d.%d" % (random.randrange(1, 224), random.randrange(256),
                            random.randrange(256), random.randrange(256)) for _ in range(700)]
    ips += [":".join("%x" % random.randrange(65536) for _ in range(8)) for _ in range(300)]

    prefix = tempfile.mkdtemp(prefix="nginx-golden-")
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(CONF % {"p": prefix, "s": SERVERS})
    version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    version = version.strip().split("/")[-1]
    subprocess.run(["nginx", "-p", prefix, "-c", conf], check=True)
    try:
        time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", 27080)

        def get(path, headers={}):
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read().decode()
            assert r.status == 200, (path, r.status)
            return int(body) - 27001

        def cstr(s):
            return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'

        out = [HEADER % version]
        for loc, name in (("h", "hash"), ("c", "chash")):
            out.append("static const struct golden_key nginx_golden_%s[] = {\n" % name)
            for k in keys:
                q = quote(k, safe='')
                out.append("    {%s, %d},\n" % (cstr(q), get("/%s?k=%s" % (loc, q))))
            out.append("};\n")
        out.append("static const struct golden_ip nginx_golden_ip_hash[] = {\n")
        for ip in ips:
            out.append("    {%s, %d},\n" % (cstr(ip), get("/i", {"X-Real-IP": ip})))
        out.append("};\n")
        sys.stdout.write("".join(out))
    finally:
        with open(os.path.join(prefix, "nginx.pid")) as f:
            os.kill(int(f.read()), signal.SIGQUIT)

main()
