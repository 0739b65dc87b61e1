#!/usr/bin/env python3
"""Open a patchcord dashboard (or report) in headless Debian chromium, driven through the
DevTools protocol, and check it: no console errors or uncaught exceptions, no request
outside the page's own origin, the expected number of stream meters, and (live pages) that
the plots advance. Saves a screenshot. Exits non-zero with a message on any failure,
also when chromium or the Python module websocket-client is missing (scripts/setup.sh
installs both): a missing browser is a failure, never a skip.

usage: browser_check.py URL --meters N --screenshot PNG [--live] [--selector CSS]
"""
import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import websocket  # websocket-client


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=10)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.time() + 20
        while time.time() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(method)

    def pump(self, seconds):
        """Collect events for `seconds`."""
        end = time.time() + seconds
        self.ws.settimeout(0.2)
        while time.time() < end:
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if "method" in msg:
                self.events.append(msg)
        self.ws.settimeout(10)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--meters", type=int, required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--live", action="store_true")
    ap.add_argument("--selector", default=".meter.stream")
    a = ap.parse_args()

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("FAIL: chromium is not installed (scripts/setup.sh installs Debian's chromium)")
    port = free_port()
    profile = tempfile.mkdtemp(prefix="patchcord-chromium-")
    proc = subprocess.Popen(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--disable-sync",
         "--disable-component-update", "--disable-default-apps", "--window-size=1280,1100",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failures = []
    try:
        targets = None
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if not targets:
            sys.exit("FAIL: chromium's DevTools endpoint did not come up within 30 s")
        page = Page(targets[0]["webSocketDebuggerUrl"])
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=a.url)
        page.pump(4)
        meters = page.eval(f"document.querySelectorAll('{a.selector}').length")
        if meters != a.meters:
            failures.append(f"{meters} meters ({a.selector}), expected {a.meters}")
        plots = page.eval("[...document.querySelectorAll('canvas')].map(c => [Number(c.dataset.points || 0), Number(c.dataset.lastT || 0)])")
        if not plots or sum(p[0] for p in plots) == 0:
            failures.append(f"the plots are empty: {plots}")
        if a.live:
            records = page.eval("Number(document.body.dataset.records || 0)")
            level_events = page.eval("Number(document.body.dataset.levelEvents || 0)")
            page.pump(3)
            level_events = page.eval("Number(document.body.dataset.levelEvents || 0)") - level_events
            # ten a second; a loaded machine may deliver fewer
            if level_events < 15:
                failures.append(f"the meters moved {level_events} times in 3 s (expected ~30)")
            later = page.eval("[...document.querySelectorAll('canvas')].map(c => [Number(c.dataset.points || 0), Number(c.dataset.lastT || 0)])")
            records_later = page.eval("Number(document.body.dataset.records || 0)")
            advanced = [i for i, (p, q) in enumerate(zip(plots, later)) if q[1] > p[1]]
            if records_later <= records or not advanced:
                failures.append(f"the plots did not advance in 3 s: records {records} -> {records_later}, last t {plots} -> {later}")
            print(f"records {records} -> {records_later}; plots advanced: {len(advanced)} of {len(later)}; meter updates in 3 s: {level_events}")
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        os.makedirs(os.path.dirname(os.path.abspath(a.screenshot)), exist_ok=True)
        with open(a.screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        origin = urllib.parse.urlsplit(a.url)
        for e in page.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                failures.append(f"console error: {p.get('args')}")
            elif m == "Runtime.exceptionThrown":
                failures.append(f"uncaught exception: {p.get('exceptionDetails', {}).get('exception', {}).get('description')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                failures.append(f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Network.requestWillBeSent":
                u = urllib.parse.urlsplit(p["request"]["url"])
                if u.scheme in ("data", "about"):
                    continue
                if (u.scheme, u.netloc) != (origin.scheme, origin.netloc):
                    failures.append(f"external request: {p['request']['url']}")
        print(f"meters {meters}; plots {plots}; {len(page.events)} DevTools events; screenshot {a.screenshot}")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("OK")


if __name__ == "__main__":
    main()
