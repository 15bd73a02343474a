"""Real Matrix and XMPP clients for the bridge end-to-end test, driven over JSON lines.

The Rust test (gateway/cli/tests/bridges.rs) starts this with the tools venv's Python and
writes one request per line on standard input: {"op": ..., ...}; each answer is one line on
standard output: {"ok": true, ...} or {"ok": false, "error": ...}. The clients are real:
matrix-nio against Synapse, slixmpp against Prosody, both on loopback.
"""

import asyncio
import base64
import io
import json
import os
import sys
import urllib.request
import uuid
import xml.etree.ElementTree as ET

from nio import AsyncClient, RoomLeaveResponse, RoomPreset, RoomSendResponse, SyncResponse
import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

HS = f"http://127.0.0.1:{os.environ.get('MIMI_PEERS_HS_PORT', '18008')}"
C2S = int(os.environ.get("MIMI_PEERS_C2S_PORT", "15222"))


class Matrix:
    def __init__(self):
        self.client = None
        self.room = None
        self.since = None
        self.events = []

    async def login(self, user, password):
        self.client = AsyncClient(HS, user)
        r = await self.client.register(user, password)
        if not getattr(r, "access_token", None):
            r = await self.client.login(password)
            if not getattr(r, "access_token", None):
                raise RuntimeError(f"cannot register or log in {user}: {r}")
        s = await self.client.sync(timeout=0)
        self.since = s.next_batch
        return {"user_id": self.client.user_id}

    async def join(self, alias):
        r = await self.client.join(alias)
        if not getattr(r, "room_id", None):
            raise RuntimeError(f"cannot join {alias}: {r}")
        self.room = r.room_id
        return {"room_id": self.room}

    async def create_dm(self, invite):
        r = await self.client.room_create(is_direct=True, invite=[invite], preset=RoomPreset.trusted_private_chat)
        if not getattr(r, "room_id", None):
            raise RuntimeError(f"cannot create a direct room with {invite}: {r}")
        self.room = r.room_id
        return {"room_id": self.room}

    async def leave(self):
        r = await self.client.room_leave(self.room)
        if not isinstance(r, RoomLeaveResponse):
            raise RuntimeError(f"cannot leave {self.room}: {r}")
        return {}

    async def accept_invites(self):
        # Joins every room this user is invited to; the last one becomes the current room.
        s = await self.client.sync(timeout=0, since=self.since)
        joined = []
        for room_id in s.rooms.invite:
            r = await self.client.join(room_id)
            if getattr(r, "room_id", None):
                joined.append(r.room_id)
                self.room = r.room_id
        return {"rooms": joined}

    async def send(self, content, event_type="m.room.message"):
        r = await self.client.room_send(self.room, event_type, content, ignore_unverified_devices=True)
        if not isinstance(r, RoomSendResponse):
            raise RuntimeError(f"send failed: {r}")
        return {"event_id": r.event_id}

    async def redact(self, event_id):
        r = await self.client.room_redact(self.room, event_id, reason="delete")
        if not getattr(r, "event_id", None):
            raise RuntimeError(f"redact failed: {r}")
        return {"event_id": r.event_id}

    async def upload(self, data, content_type, filename):
        r, _ = await self.client.upload(io.BytesIO(data), content_type=content_type, filename=filename, filesize=len(data))
        if not getattr(r, "content_uri", None):
            raise RuntimeError(f"upload failed: {r}")
        return {"content_uri": r.content_uri}

    async def download(self, mxc):
        r = await self.client.download(mxc=mxc)
        body = getattr(r, "body", None)
        if body is None:
            raise RuntimeError(f"download failed: {r}")
        return {"data": base64.b64encode(body).decode()}

    async def poll(self, timeout_ms):
        s = await self.client.sync(timeout=timeout_ms, since=self.since)
        if not isinstance(s, SyncResponse):
            raise RuntimeError(f"sync failed: {s}")
        self.since = s.next_batch
        out = []
        for section in (s.rooms.join, s.rooms.leave):
            room = section.get(self.room)
            if room:
                for e in room.timeline.events:
                    out.append(e.source)
        invites = list(s.rooms.invite.keys())
        return {"events": out, "invites": invites}


class Xmpp(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password, plugin_config={"feature_mechanisms": {"unencrypted_scram": True}})
        self.enable_plaintext = True
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.received = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.join_error = None
        self.ready = asyncio.Event()
        self.joined = asyncio.Event()
        self.add_event_handler("session_start", self._start)
        self.register_handler(Callback("all messages", MatchXPath("{jabber:client}message"), self._message))
        self.register_handler(Callback("presence", MatchXPath("{jabber:client}presence"), self._presence))

    async def _start(self, _):
        self.send_presence()
        self.ready.set()

    def _message(self, msg):
        self.received.put_nowait(str(msg))

    def _presence(self, p):
        self.presences.put_nowait(str(p))
        if ('code="110"' in str(p) or "code='110'" in str(p)) and p["type"] != "unavailable":
            self.joined.set()
        if p["type"] == "error":
            self.join_error = str(p)
            self.joined.set()


class Driver:
    def __init__(self):
        self.mx = Matrix()
        self.xm = None

    async def handle(self, req):
        op = req["op"]
        if op == "mx_login":
            return await self.mx.login(req["user"], req["password"])
        if op == "mx_join":
            return await self.mx.join(req["alias"])
        if op == "mx_create_dm":
            return await self.mx.create_dm(req["invite"])
        if op == "mx_leave":
            return await self.mx.leave()
        if op == "mx_read":
            r = await self.mx.client.room_read_markers(self.mx.room, req["event_id"], req["event_id"])
            if type(r).__name__.endswith("Error"):
                raise RuntimeError(f"read marker failed: {r}")
            return {}
        if op == "mx_use":
            self.mx.room = req["room_id"]
            return {}
        if op == "mx_accept_invites":
            return await self.mx.accept_invites()
        if op == "mx_send":
            return await self.mx.send(req["content"], req.get("type", "m.room.message"))
        if op == "mx_redact":
            return await self.mx.redact(req["event_id"])
        if op == "mx_upload":
            return await self.mx.upload(base64.b64decode(req["data"]), req["content_type"], req["filename"])
        if op == "mx_download":
            return await self.mx.download(req["mxc"])
        if op == "mx_poll":
            return await self.mx.poll(req.get("timeout_ms", 1000))
        if op == "xm_login":
            self.xm = Xmpp(req["jid"], req["password"])
            self.xm.connect("127.0.0.1", C2S)
            await asyncio.wait_for(self.xm.ready.wait(), 20)
            return {}
        if op == "xm_join":
            self.xm.joined.clear()
            self.xm.join_error = None
            self.xm.send_raw(
                f"<presence to='{req['muc']}/{req['nick']}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
            )
            await asyncio.wait_for(self.xm.joined.wait(), 30)
            if self.xm.join_error:
                raise RuntimeError(f"join refused: {self.xm.join_error}")
            return {}
        if op == "xm_upload":
            # XEP-0363: a slot from the component, then an HTTP PUT of the bytes.
            data = base64.b64decode(req["data"])
            iq = self.xm.Iq()
            iq["type"] = "get"
            iq["to"] = req["service"]
            iq.append(ET.fromstring(
                f"<request xmlns='urn:xmpp:http:upload:0' filename='{req['filename']}' size='{len(data)}' content-type='{req['content_type']}'/>"
            ))
            resp = await iq.send(timeout=20)
            slot = resp.xml.find("{urn:xmpp:http:upload:0}slot")
            put = slot.find("{urn:xmpp:http:upload:0}put").get("url")
            get = slot.find("{urn:xmpp:http:upload:0}get").get("url")

            def do_put():
                r = urllib.request.Request(put, data=data, method="PUT", headers={"Content-Type": req["content_type"]})
                with urllib.request.urlopen(r, timeout=20) as f:
                    return f.status

            status = await asyncio.to_thread(do_put)
            if status not in (200, 201):
                raise RuntimeError(f"PUT answered {status}")
            return {"url": get}
        if op == "http_get":
            def do_get():
                with urllib.request.urlopen(req["url"], timeout=20) as f:
                    return f.read()
            return {"data": base64.b64encode(await asyncio.to_thread(do_get)).decode()}
        if op == "xm_presences":
            out = []
            try:
                first = await asyncio.wait_for(self.xm.presences.get(), req.get("timeout_ms", 1000) / 1000)
                out.append(first)
                while not self.xm.presences.empty():
                    out.append(self.xm.presences.get_nowait())
            except asyncio.TimeoutError:
                pass
            return {"stanzas": out}
        if op == "xm_send":
            self.xm.send_raw(req["xml"])
            return {}
        if op == "xm_poll":
            out = []
            try:
                first = await asyncio.wait_for(self.xm.received.get(), req.get("timeout_ms", 1000) / 1000)
                out.append(first)
                while not self.xm.received.empty():
                    out.append(self.xm.received.get_nowait())
            except asyncio.TimeoutError:
                pass
            return {"stanzas": out}
        if op == "uuid":
            return {"id": str(uuid.uuid4())}
        raise RuntimeError(f"unknown op {op}")


async def main():
    d = Driver()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            req = json.loads(line)
            res = await d.handle(req)
            res["ok"] = True
        except Exception as e:  # every failure goes back to the test as text
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()
    if d.mx.client:
        await d.mx.client.close()
    if d.xm:
        d.xm.disconnect()


asyncio.run(main())
