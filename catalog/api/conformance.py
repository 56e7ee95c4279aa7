"""Run stac-api-validator against a served API with the JSON schemas it needs served offline.

stac-api-validator (and the stac-validator / stac-check it calls) fetches JSON schemas
from their ``https://`` URLs at run time. This runner mounts a ``requests`` transport
adapter for ``https://`` in its own process that answers from the schemas shipped in
:mod:`spectralearth.catalog.schemas` and pystac's bundled copies, and 404s anything
else (so a schema that is not shipped fails validation visibly, instead of reaching
the network). ``http://`` (the API under test, on loopback) goes through unchanged.
Then it calls the validator's own command line.

stac-api-validator exits 0 even when it prints ``Failed.`` after an internal error;
:func:`validate_api` therefore reads the report text and only passes a run that has
no error lines and no ``Failed``.

Command line: ``python -m spectralearth.catalog.api.conformance ROOT_URL --conformance core ...``
(the validator's own options).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["OfflineSchemas", "validate_api"]


def _schema_roots() -> list[tuple[str, Path]]:
    """(URL prefix, local folder) pairs, most specific first."""
    import pystac.validation

    shipped = Path(__import__("spectralearth.catalog.schemas", fromlist=["x"]).__file__).resolve().parent
    roots = [(f"https://{d.name}/", d) for d in shipped.iterdir() if d.is_dir() and "." in d.name]
    bundled = Path(pystac.validation.__file__).resolve().parent / "jsonschemas"
    for version_dir in sorted((bundled / "stac-spec").glob("v*")):
        for kind in ("item", "collection", "catalog"):
            roots.append((f"https://schemas.stacspec.org/{version_dir.name}/{kind}-spec/json-schema/", version_dir))
    roots.append(("https://geojson.org/schema/", bundled / "geojson"))
    return roots


class OfflineSchemas:
    """A ``requests`` adapter answering ``https://`` schema URLs from local files (404 otherwise)."""

    def __init__(self):
        from requests.adapters import BaseAdapter

        roots = _schema_roots()
        self.served: list[str] = []
        self.missing: list[str] = []
        outer = self

        class Adapter(BaseAdapter):
            def send(self, request, **kwargs):
                import requests

                url = request.url.split("#", 1)[0].split("?", 1)[0]
                resp = requests.Response()
                resp.url, resp.request = request.url, request
                for prefix, folder in roots:
                    if url.startswith(prefix):
                        path = (folder / url[len(prefix):]).resolve()
                        if folder.resolve() in path.parents and path.is_file():
                            resp.status_code = 200
                            resp._content = path.read_bytes()
                            resp.headers["Content-Type"] = "application/json"
                            outer.served.append(url)
                            return resp
                outer.missing.append(url)
                resp.status_code = 404
                resp._content = f"not shipped offline: {url}".encode()
                resp.reason = "Not Found"
                return resp

            def close(self):
                pass

        self.adapter = Adapter()

    def install(self) -> None:
        """Mount on every ``requests.Session`` made from now on in this process (``requests.get`` included)."""
        import requests

        adapter = self.adapter
        original = requests.Session.__init__

        def init(session, *args, **kwargs):
            original(session, *args, **kwargs)
            session.mount("https://", adapter)

        requests.Session.__init__ = init


def validate_api(root_url: str, *, conformance: tuple[str, ...] = ("core", "features", "item-search", "filter"),
                 collection: str, geometry: str, timeout: float = 600) -> tuple[bool, str]:
    """Run stac-api-validator (in a subprocess, schemas offline); returns ``(passed, report)``."""
    cmd = [sys.executable, "-m", "spectralearth.catalog.api.conformance", "--root-url", root_url,
           "--collection", collection, "--geometry", geometry]
    for c in conformance:
        cmd += ["--conformance", c]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    report = res.stdout + res.stderr
    passed = res.returncode == 0 and "Errors: none" in report and "Failed." not in report
    return passed, report


def main() -> None:
    offline = OfflineSchemas()
    offline.install()
    from stac_api_validator.__main__ import main as validator_main

    try:
        validator_main(prog_name="stac-api-validator")
    finally:
        if offline.missing:
            print("schemas not shipped offline (answered 404): " + ", ".join(sorted(set(offline.missing))), file=sys.stderr)


if __name__ == "__main__":
    main()
