"""Regenerate docs/img/web-dashboard.png (the README picture of the web view): the demo store's
2026Q3 dashboard in Debian's Chromium (headless, driven by Selenium; nothing is downloaded).

    python scripts/web_picture.py [DEMO_DIR]     # run `compliance demo` first
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    demo = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "compliance-demo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "compliance.cli.main", "--db", f"sqlite:///{demo / 'compliance.db'}", "serve",
                             "--port", str(port), "--reports-dir", str(demo)], cwd=ROOT)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/static/web.css", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars"):
            opts.add_argument(a)
        d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
        try:
            d.get(f"http://127.0.0.1:{port}/?quarter=2026Q3&as_of=2026-10-05T00:00:00Z")
            out = ROOT / "docs" / "img" / "web-dashboard.png"
            d.save_screenshot(str(out))
        finally:
            d.quit()
        print(f"wrote {out}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
