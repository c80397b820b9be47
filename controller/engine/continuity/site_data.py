"""The site's data as relctl copies it itself (SQLite): a consistent copy captured on a
host (the online backup API, every copy sha256-checked) and loaded into others, through
relctl's host agent."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from controller.agent.protocol import CopyDataRequest, Entry, ItemSpec, LoadDataRequest
from controller.engine.continuity.site import Site
from controller.errors import ContinuityError


@dataclass
class SiteData:
    """The plan's data items on the site's hosts (reached by the site's host agent)."""

    site: Site

    def capture(self, host: str, store: Path, tag: str) -> dict[str, Entry]:
        """A consistent copy of the plan's data on ``host`` (online backup API), kept in
        ``store/host/bundle`` with its ``index.json``; every copy's sha256 checked. The
        files are named by the plan's item names, never by what the host sent."""
        request = CopyDataRequest(command="copy_data", items=self._specs())
        reply = self.site.agent.copy_data(tag, {host: request})[host]
        if not reply.ok:
            raise ContinuityError(f"cannot copy the data from {host}: {reply.error}")
        folder = store / host / "bundle"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        sent, payloads = reply.data.get("index", {}), reply.data.get("payloads", {})
        index: dict[str, Entry] = {}
        for data in self.site.plan.data:
            entry = sent.get(data.name)
            body = base64.b64decode(payloads.get(entry.get("payload", ""), "")) if entry else b""
            if entry is None or hashlib.sha256(body).hexdigest() != entry.get("sha256"):
                raise ContinuityError(f"the copy of {data.name} fetched from {host} is "
                                      "missing or fails its sha256", hint="no host was changed")
            (folder / f"{data.name}.db").write_bytes(body)
            index[data.name] = {**entry, "payload": f"{data.name}.db"}
        (folder / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
        return index

    def load(self, hosts: list[str], bundle: Path, tag: str) -> None:
        """Load the databases of a bundle folder (``capture``'s) into ``hosts`` through
        the online backup API; the host checks each sha256 before it touches anything."""
        index: dict[str, Entry] = json.loads((bundle / "index.json").read_text())
        payloads: dict[str, str] = {}
        for name, entry in index.items():
            payload = str(entry.get("payload", ""))
            if Path(payload).name != payload or payload in ("", ".", ".."):
                raise ContinuityError(f"the replica's index names {payload!r} for {name}: "
                                      f"not a file of {bundle}", hint="no host was changed")
            payloads[payload] = base64.b64encode((bundle / payload).read_bytes()).decode()
        request = LoadDataRequest(command="load_data", items=self._specs(), index=index,
                                  payloads=payloads)
        replies = self.site.agent.load_data(tag, dict.fromkeys(hosts, request))
        failed = {h: r.error for h, r in replies.items() if not r.ok}
        if failed:
            raise ContinuityError(f"cannot load the data on {', '.join(sorted(failed))}: "
                                  + "; ".join(f"{h}: {e}" for h, e in sorted(failed.items())))

    def _specs(self) -> list[ItemSpec]:
        return [ItemSpec(kind="data", name=d.name, path=d.path or "", engine=d.engine)
                for d in self.site.plan.data]
