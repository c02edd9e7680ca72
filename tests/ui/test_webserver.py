"""The README's UI: the webserver serves the graph, its partitions and its metadata.

One module-scoped instance is filled by ``python -m lensing_assets.demo`` (sim 109, lmax 200,
no training) and served by ``python -m dagster_webserver`` on loopback; the webserver runs
alone, without ``dagster dev``'s daemon, whose sensors would launch runs in this instance.
The first test reads it through the GraphQL API, the second through headless Chromium,
driven over the DevTools protocol: a markdown metadata image is only shown after a click on
its ``[Show Markdown]`` link (the UI inlines markdown shorter than 1000 characters only).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import free_port, graphql, stop_process_group, tail
from tests.fixtures.shell import REPO, shell, user_environment

SERVER_START_TIMEOUT_S = 90.0
PAGE_TIMEOUT_S = 60.0

TILES_KEY = "109|200"
TILES_PAGE = "/assets/tiles?view=partitions&partition=109%7C200"  # that partition's metadata
IMAGE_ENTRY = "tile_gallery"  # a markdown metadata entry of tiles holding a PNG data URI
PNG_DATA_URI = "data:image/png;base64,"

EXPECTED_ASSETS = {
    "kappa_maps",
    "tiles",
    "tile_shards",
    "hf_dataset",
    "compressor_model",
    "npe_model",
    "fom_report",
    "band_powers",
    "cl_fom_report",
    "fisher_forecast",
    "study_report",
}

ASSET_NODES_QUERY = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    isPartitioned
    partitionKeys
  }
}
"""

METADATA_FIELDS = """
      __typename
      label
      ... on PathMetadataEntry { path }
      ... on FloatMetadataEntry { floatValue }
      ... on IntMetadataEntry { intValue }
      ... on TextMetadataEntry { text }
      ... on JsonMetadataEntry { jsonString }
      ... on MarkdownMetadataEntry { mdStr }
"""

MATERIALIZATION_QUERY = f"""
query LatestMaterialization($assetKey: AssetKeyInput!, $partitions: [String!]) {{
  assetNodeOrError(assetKey: $assetKey) {{
    __typename
    ... on AssetNode {{
      partitionKeysByDimension {{ name partitionKeys }}
      assetMaterializations(partitions: $partitions, limit: 1) {{
        partition
        runId
        metadataEntries {{ {METADATA_FIELDS} }}
      }}
    }}
  }}
}}
"""

CHECK_EXECUTION_QUERY = f"""
query LatestCheckExecution($assetKey: AssetKeyInput!, $checkName: String!, $partition: String) {{
  assetCheckExecutions(
    assetKey: $assetKey, checkName: $checkName, partition: $partition, limit: 1
  ) {{
    status
    partition
    evaluation {{
      success
      metadataEntries {{ {METADATA_FIELDS} }}
    }}
  }}
}}
"""


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a webserver on an instance holding kappa_maps[109] and tiles[109|200]."""
    tmp = tmp_path_factory.mktemp("webserver")
    # nside 128: the smallest with lmax-200 tiles (128 x 128)
    env = user_environment(tmp, LENSING_NSIDE="128")
    demo = shell("python -m lensing_assets.demo --sims 109 --lmax 200 --train", env, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    out, err = tmp / "webserver.out", tmp / "webserver.err"
    command = (
        f". ./env.sh && exec python -m dagster_webserver -m lensing_assets -h 127.0.0.1 -p {port}"
    )
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"webserver exited with {process.returncode}:\n{tail(err)}")
            try:
                with urllib.request.urlopen(f"{base_url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"webserver not up after {SERVER_START_TIMEOUT_S:.0f} s:\n{tail(err)}")
            time.sleep(0.5)
        yield base_url
    finally:
        stop_process_group(process)


def _by_label(entries: list[dict]) -> dict[str, dict]:
    return {entry["label"]: entry for entry in entries}


@pytest.mark.slow
def test_graphql_serves_assets_partitions_and_metadata(webserver: str) -> None:
    nodes = graphql(webserver, ASSET_NODES_QUERY)["assetNodes"]
    by_key = {"/".join(node["assetKey"]["path"]): node for node in nodes}
    assert set(by_key) >= EXPECTED_ASSETS, sorted(by_key)
    assert TILES_KEY in by_key["tiles"]["partitionKeys"]
    assert "109" in by_key["kappa_maps"]["partitionKeys"]

    tiles = graphql(
        webserver,
        MATERIALIZATION_QUERY,
        {"assetKey": {"path": ["tiles"]}, "partitions": [TILES_KEY]},
    )["assetNodeOrError"]
    assert tiles["__typename"] == "AssetNode"
    dimensions = {d["name"]: d["partitionKeys"] for d in tiles["partitionKeysByDimension"]}
    assert "109" in dimensions["sim"]
    assert "200" in dimensions["tile_lmax"]
    (latest,) = tiles["assetMaterializations"]
    assert latest["partition"] == TILES_KEY
    metadata = _by_label(latest["metadataEntries"])
    assert metadata["path"]["__typename"] == "PathMetadataEntry"
    assert metadata["path"]["path"].endswith(".npz")
    assert metadata["sky_coverage"]["__typename"] == "FloatMetadataEntry"
    assert 0.5 < metadata["sky_coverage"]["floatValue"] <= 1.0
    assert metadata[IMAGE_ENTRY]["__typename"] == "MarkdownMetadataEntry"
    assert PNG_DATA_URI in metadata[IMAGE_ENTRY]["mdStr"]

    # The asset checks' metadata is served too: the spectra plot of kappa_maps[109].
    (execution,) = graphql(
        webserver,
        CHECK_EXECUTION_QUERY,
        {
            "assetKey": {"path": ["kappa_maps"]},
            "checkName": "spectra_match_theory",
            "partition": "109",
        },
    )["assetCheckExecutions"]
    assert execution["partition"] == "109"
    assert execution["evaluation"]["success"]
    plot = _by_label(execution["evaluation"]["metadataEntries"])["plot"]
    assert plot["__typename"] == "MarkdownMetadataEntry"
    assert PNG_DATA_URI in plot["mdStr"]


class _DevTools:
    """The few DevTools-protocol calls the test needs, on one page of a headless Chromium."""

    def __init__(self, websocket: Any) -> None:
        self._ws = websocket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict:
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # events of the page arrive in between; skip them
            message = json.loads(self._ws.recv(timeout=PAGE_TIMEOUT_S))
            if message.get("id") == call_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str) -> Any:
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        text = self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
        pytest.fail(f"{what} not on the page after {PAGE_TIMEOUT_S:.0f} s; it shows:\n{text}")

    def open(self, url: str) -> None:
        """Load *url* and wait until its new document has loaded (never the previous one)."""
        self.evaluate("window.previousDocument = true")
        self.call("Page.navigate", url=url)
        self.wait_for(
            "!window.previousDocument && document.readyState === 'complete'", f"a loaded {url}"
        )

    def screenshot(self, path: Path) -> Path:
        # let the dialog's fade-in finish before the picture is taken
        self.evaluate(
            "Promise.all(document.getAnimations()"
            ".filter((a) => a.effect?.getComputedTiming().endTime !== Infinity)"
            ".map((a) => a.finished))"
        )
        path.write_bytes(
            base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        )
        return path


# True once no "Join the Dagster community" dialog is open; clicks its Skip/Close if one is.
DISMISS_COMMUNITY_DIALOG = """(() => {
  const dialogs = [...document.querySelectorAll('[role=dialog], [class*=dialog]')]
    .filter((d) => (d.innerText || '').includes('Join the Dagster community'));
  if (!dialogs.length) return true;
  for (const d of dialogs) {
    const button = [...d.querySelectorAll('button')].find((b) =>
      /^(skip|close)$/i.test((b.innerText || b.getAttribute('aria-label') || '').trim()));
    if (button) button.click();
  }
  return false;
})()"""


def _metadata_row(label: str) -> str:
    """JS: the value cell of the metadata row *label* (rows are <tr><td>label</td><td>...)."""
    xpath = f"//tr[td[1][normalize-space()='{label}']]/td[2]"
    return (
        f'document.evaluate("{xpath}", document, null, '
        "XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue"
    )


DECODED_PNG = f"""(() => {{
  const img = [...document.querySelectorAll("img")].find(
    (i) => i.src.startsWith("{PNG_DATA_URI}") && i.complete && i.naturalWidth > 0);
  return img ? {{width: img.naturalWidth, height: img.naturalHeight}} : null;
}})()"""


@pytest.mark.slow
def test_asset_page_in_headless_chromium(
    webserver: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    from websockets.sync.client import connect  # with dagster-webserver (uvicorn[standard])

    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    chromium_err = tmp_path / "chromium.err"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",  # Chromium picks a free port and writes it down
    ]
    with chromium_err.open("wb") as stderr:
        process = subprocess.Popen(
            [browser, *flags, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        # Chromium writes its port, then the browser's socket path, once it listens.
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while not (active_port.exists() and len(active_port.read_text().splitlines()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start:\n{tail(chromium_err)}")
            time.sleep(0.1)
        port = int(active_port.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        with connect(page_url, max_size=None, open_timeout=10) as websocket:
            page = _DevTools(websocket)
            # As if the "Join the Dagster community" dialog, shown on localhost a second after
            # the first visit, had been dismissed: it would cover the page in the screenshots.
            page.call(
                "Page.addScriptToEvaluateOnNewDocument",
                source="localStorage.setItem('communityNux', JSON.stringify('1'))",
            )

            # The asset page of tiles[109|200]: the asset's name and the partition's metadata.
            page.open(webserver + TILES_PAGE)
            coverage = page.wait_for(
                f"{_metadata_row('sky_coverage')}?.innerText",
                "the sky_coverage metadata of tiles[109|200]",
            )
            assert 0.5 < float(coverage) <= 1.0
            assert page.evaluate(f"!!{_metadata_row('path')}")
            assert "tiles" in page.evaluate("document.title")
            dom = page.evaluate("document.documentElement.outerHTML")
            assert ">tiles<" in dom
            assert "Latest materialization" in dom
            asset_page = page.screenshot(tmp_path / "tiles_asset_page.png")

            # The metadata image: its [Show Markdown] link opens a dialog with the decoded PNG.
            link = f"{_metadata_row(IMAGE_ENTRY)}?.querySelector('a')"
            page.wait_for(
                f"{link}?.innerText === '[Show Markdown]'", f"the {IMAGE_ENTRY} metadata entry"
            )
            page.evaluate(f"{link}.click()")
            size = page.wait_for(DECODED_PNG, f"the decoded {IMAGE_ENTRY} image")
            # the community dialog can still pop up (its storage key is Dagster's to change):
            # close it as a person would, so that it does not cover the screenshot
            page.wait_for(DISMISS_COMMUNITY_DIALOG, "no 'Join the Dagster community' dialog")
            assert size["width"] >= 100
            assert size["height"] >= 100
            image_page = page.screenshot(tmp_path / "tiles_gallery.png")
    finally:
        stop_process_group(process, timeout_s=10)

    stable = tmp_path_factory.getbasetemp() / "screenshots"
    stable.mkdir(exist_ok=True)
    for screenshot in (asset_page, image_page):
        assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert screenshot.stat().st_size > 20_000, screenshot.stat().st_size
        copy = shutil.copy2(screenshot, stable / screenshot.name)
        print(f"screenshot: {copy}")
