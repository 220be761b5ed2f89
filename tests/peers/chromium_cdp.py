#!/usr/bin/env python3
"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
loads a URL in an emulated viewport of any width (plain --window-size stops at 500 px), waits,
and prints one JSON object with the page's layout facts and its serialized DOM; optionally
writes a screenshot.

    chromium_cdp.py URL WIDTH HEIGHT WAIT_SECONDS [SCREENSHOT.png]
    chromium_cdp.py --print URL WIDTH HEIGHT WAIT_SECONDS OUT.pdf

With --print the page is laid out for print media in a viewport WIDTH wide (an A4 page's
content box: 210 mm less the margins of its @page rule) and printed to OUT.pdf with the page
size and margins of its CSS; "tables" then lists every table's width and right edge (px).

Output: {"viewport": css px, "scroll_width": px, "overflowing": ["tag#id", ...], "tables": [...],
"h1_fonts": [font families drawn], "dom": "..."}
where "overflowing" lists visible elements whose box sticks out of the viewport sideways
(ignoring those inside an element that scrolls or clips horizontally).
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

LAYOUT = r"""
(() => {
  const vw = document.documentElement.clientWidth;
  const clipped = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip') {
        if (p !== document.body && p !== document.documentElement) return true;
      }
    }
    return false;
  };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if ((r.right > vw + 0.5 || r.left < -0.5) && !clipped(el)) {
      out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && el.className.baseVal === undefined && el.className ? '.' + el.className : ''));
    }
  }
  return JSON.stringify({
    viewport: vw,
    scroll_width: document.documentElement.scrollWidth,
    overflowing: out.slice(0, 30),
    tables: [...document.querySelectorAll('table')].map((t) => {
      const r = t.getBoundingClientRect();
      return { id: t.id || (t.previousElementSibling ? t.previousElementSibling.textContent.slice(0, 60) : ''), width: r.width, right: r.right, scroll_width: t.scrollWidth };
    }),
    dom: document.documentElement.outerHTML,
  });
})()
"""


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    sys.exit("no chromium on PATH")


class Cdp:
    def __init__(self, profile):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds():
            # Duplicates first: the pipes themselves may be on 3 and 4.
            r, w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(r, 3)
            os.dup2(w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            close_fds=False, preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                chunk = os.read(self.from_child, 1 << 20)
                if not chunk:
                    sys.exit(f"chromium closed the pipe during {method}")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    sys.exit(f"{method}: {reply['error']}")
                return reply["result"]

    def close(self):
        try:
            self.call("Browser.close")
        except SystemExit:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main():
    args = sys.argv[1:]
    printing = args[:1] == ["--print"]
    if printing:
        args = args[1:]
    url, width, height, wait = args[0], int(args[1]), int(args[2]), float(args[3])
    shot = args[4] if len(args) > 4 else None
    with tempfile.TemporaryDirectory() as profile:
        cdp = Cdp(profile)
        try:
            target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            s = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            cdp.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
                     session=s)
            if printing:
                cdp.call("Emulation.setEmulatedMedia", {"media": "print"}, session=s)
            cdp.call("Page.enable", session=s)
            cdp.call("Page.navigate", {"url": url}, session=s)
            time.sleep(wait)
            r = cdp.call("Runtime.evaluate", {"expression": LAYOUT, "returnByValue": True}, session=s)
            facts = json.loads(r["result"]["value"])
            # The fonts Chromium actually drew the first heading with (not the CSS's wish list).
            cdp.call("DOM.enable", session=s)
            cdp.call("CSS.enable", session=s)
            root = cdp.call("DOM.getDocument", session=s)["root"]["nodeId"]
            h = cdp.call("DOM.querySelector", {"nodeId": root, "selector": "h1"}, session=s)["nodeId"]
            facts["h1_fonts"] = [f["familyName"] for f in cdp.call(
                "CSS.getPlatformFontsForNode", {"nodeId": h}, session=s)["fonts"]] if h else []
            if shot and printing:
                pdf = cdp.call("Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True}, session=s)
                with open(shot, "wb") as f:
                    f.write(base64.b64decode(pdf["data"]))
            elif shot:
                png = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=s)
                with open(shot, "wb") as f:
                    f.write(base64.b64decode(png["data"]))
            print(json.dumps(facts))
        finally:
            cdp.close()


if __name__ == "__main__":
    main()
