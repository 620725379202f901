"""nginx itself as the reference: the same http { } text runs in nginx 1.22 (Debian's
nginx-light) and in ballast, and a test compares what each answers or logs. One nginx process
(master_process off), its own prefix, pid and error log under workdir."""
import os
import shutil
import subprocess

import pytest

from conftest import SLOW, listening_ports, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """Starts nginx on http_body at once; access_log_off puts `access_log off;` first in http
    (tests that compare answers, not logs, keep nginx from writing Debian's default log)."""

    def __init__(self, workdir, http_body, access_log_off=False):
        os.makedirs(workdir, exist_ok=True)
        self.dir = workdir
        temp = "".join("%s_temp_path %s/%s;\n" % (t, workdir, t)
                       for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = os.path.join(workdir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write("daemon off;\nmaster_process off;\nworker_processes 1;\n"
                    "pid %s/nginx.pid;\nerror_log %s/error.log;\n%s"
                    "events { worker_connections 64; }\nhttp {\n%s%s%s\n}\n"
                    % (workdir, workdir, "user root;\n" if os.geteuid() == 0 else "",
                       "access_log off;\n" if access_log_off else "", temp, http_body))
        self.proc = subprocess.Popen([NGINX, "-p", workdir, "-e", workdir + "/error.log",
                                      "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)

    def started(self, port):
        """True once nginx runs and listens on port (bounded wait)."""
        return wait_for(lambda: self.proc.poll() is None and port in listening_ports(),
                        5 * SLOW)

    def wait_listening(self, port):
        """Fails the test, with nginx's own words, unless it listens on port."""
        if not self.started(port):
            self.stop()
            pytest.fail("nginx did not start: %s %s" % (self.proc.stderr.read().decode(),
                                                         self.error_log()))

    def error_log(self):
        try:
            return open(self.dir + "/error.log").read()
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
