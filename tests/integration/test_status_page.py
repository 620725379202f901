"""The status page (issue 8, "Metrics and status") in a real headless chromium driven over the
DevTools protocol (tests/integration/cdp.py): the page renders every server of every upstream
from the API, refreshes itself, and a click on "drain" makes that server show "draining" and
receive no new requests while traffic runs. A screenshot is saved in the test's directory.
"""
import json
import os

import pytest

from cdp import Browser, chromium_path
from conftest import SLOW, wait_for
from test_admin import TOKEN, Api, Load, start

pytestmark = pytest.mark.skipif(not chromium_path(), reason="chromium is not installed")


def rows(br):
    return br.eval("Array.from(document.querySelectorAll('tr[data-id]')).map(function(t){"
                   "return {up: t.dataset.upstream, id: +t.dataset.id, server: t.dataset.server,"
                   " state: t.querySelector('.state').textContent,"
                   " weight: +t.querySelector('.weight').textContent,"
                   " requests: +t.querySelector('.requests').textContent};})")


@pytest.mark.serial
def test_status_page_drain_click(ballast, backend, tmp_path):
    backs = [backend(n) for n in ("a", "b", "c")]
    b = start(ballast, backs, workers=2,
              http="upstream other { server 127.0.0.1:%d weight=2; }" % backs[0].port)
    api = Api(b)
    url = "http://127.0.0.1:%d/status?token=%s" % (b.values["port_admin"], TOKEN)
    try:
        with Browser(tmp_path) as br, Load(b, threads=3) as load:
            br.navigate(url)
            br.wait("document.body && document.body.getAttribute('data-loaded') == '1'")
            # The token went from the address bar into memory.
            assert "token" not in br.eval("location.href")
            got = rows(br)
            # In the config's order: "other" is written before "app".
            assert [(r["up"], r["id"], r["server"], r["state"]) for r in got] == (
                [("other", 0, "127.0.0.1:%d" % backs[0].port, "up")]
                + [("app", i, "127.0.0.1:%d" % x.port, "up") for i, x in enumerate(backs)]), got
            assert got[0]["weight"] == 2
            # It refreshes itself: request counts grow under the running traffic.
            load.wait_more(60)
            br.wait("+document.querySelector('tr[data-upstream=\"app\"][data-id=\"1\"] "
                    ".requests').textContent > 0")
            # Drain b with a real click, held across the page's once-a-second refresh: a
            # rebuild of the table under the pressed button used to swallow the click.
            br.click('tr[data-upstream="app"][data-id="1"] button.drain', hold=1.5)
            br.wait("document.querySelector('tr[data-upstream=\"app\"][data-id=\"1\"] "
                    ".state').textContent == 'draining'")
            assert api.server("app", 1)["drain"] is True
            # No new requests for it while traffic runs (those on their way at the click may
            # still land: at most one per client thread).
            load.wait_more(3 * 2)
            settled = len(backs[1].requests)
            load.wait_more(150)
            assert len(backs[1].requests) == settled
            assert len(backs[0].requests) > 0 and len(backs[2].requests) > 0
            br.wait("document.querySelector('tr[data-upstream=\"app\"][data-id=\"1\"] "
                    "button.enable').disabled == false")
            shot = br.screenshot(os.path.join(str(tmp_path), "status.png"))
            assert os.path.getsize(shot) > 1000
            # Enable brings it back.
            br.click('tr[data-upstream="app"][data-id="1"] button.enable')
            br.wait("document.querySelector('tr[data-upstream=\"app\"][data-id=\"1\"] "
                    ".state').textContent == 'up'")
            assert wait_for(lambda: len(backs[1].requests) > settled, 10 * SLOW)
        assert not load.errors, load.errors[:5]
    finally:
        api.close()


def test_status_page_token_field(ballast, backend, tmp_path):
    b1 = backend("a")
    b = start(ballast, [b1])
    with Browser(tmp_path) as br:
        br.navigate("http://127.0.0.1:%d/status" % b.values["port_admin"])
        # Without the token the API says 401 and the page shows it.
        br.wait("document.getElementById('error').textContent.indexOf('401') >= 0")
        br.eval("var f=document.getElementById('token'); f.value=%s;"
                "f.dispatchEvent(new Event('change'));" % json.dumps(TOKEN))
        br.wait("document.body.getAttribute('data-loaded') == '1'")
        assert [r["server"] for r in rows(br)] == ["127.0.0.1:%d" % b1.port]
