#!/usr/bin/env python3
"""An XMPP user for sipjab's end-to-end tests, on slixmpp (a real XMPP client library).

It logs in over c2s on loopback (no TLS: the test Prosody allows plain auth there) and is
driven line by line:

  stdin   send TO BODY...          a chat message
          send-id ID TO BODY...    the same with a stanza id
          presence TO TYPE         a presence of that type (subscribe, unsubscribe, probe...)
          show SHOW STATUS...      broadcast available presence with that show and status
          forget JID               remove JID from the roster (cancels both subscriptions)
          join ROOM NICK           join a MUC room (XEP-0045), accepting a new room as an
                                   instant room; prints "joined ROOM" or "join-error ROOM"
          groupchat ROOM BODY...   a groupchat message to the room
          kick ROOM NICK           kick an occupant (as a moderator); prints "kicked NICK"
          quit
  stdout  ready                    logged in, presence sent
          message {json}           a message arrived: from, to, type, id, body, subject,
                                   error (condition name, for type='error')
          presence {json}          a presence arrived: from, type, show, status, priority
          sent ID

Usage: peer.py JID PASSWORD HOST:PORT
"""

import asyncio
import json
import sys

import slixmpp


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.on_message)
        # Subscriptions are answered by the test, not by the library.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        # slixmpp names available presence with a <show/> after the show (presence_away).
        for kind in ("available", "away", "chat", "dnd", "xa", "unavailable", "subscribe",
                     "subscribed", "unsubscribe", "unsubscribed", "probe", "error"):
            self.add_event_handler("presence_" + kind, self.on_presence)
        # The MUC plugin keeps room presence away from the roster events.
        self.add_event_handler("groupchat_presence", self.on_presence)
        self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0045")

    def fail(self, why):
        print(f"error {why}", flush=True)
        sys.exit(1)

    async def start(self, _event):
        self.send_presence()
        await self.get_roster()
        print("ready", flush=True)
        asyncio.ensure_future(self.commands())

    def on_message(self, msg):
        event = {
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "type": msg["type"],
            "id": msg["id"],
            "body": msg["body"],
            "subject": msg["subject"],
        }
        if msg["type"] == "error":
            event["error"] = msg["error"]["condition"]
            event["error_text"] = msg["error"]["text"]
        print("message " + json.dumps(event), flush=True)

    def on_presence(self, pres):
        if pres["from"].bare == self.boundjid.bare:
            return
        ptype = pres["type"]
        if ptype in ("away", "chat", "dnd", "xa"):
            ptype = "available"
        event = {
            "from": str(pres["from"]),
            "type": ptype,
            "show": pres["show"],
            "status": pres["status"],
            "priority": pres["priority"],
        }
        print("presence " + json.dumps(event), flush=True)

    async def join(self, room, nick):
        muc = self.plugin["xep_0045"]
        try:
            result = await muc.join_muc_wait(slixmpp.JID(room), nick, maxstanzas=0, timeout=10)
        except (slixmpp.exceptions.PresenceError, asyncio.TimeoutError) as e:
            print(f"join-error {room} {e}", flush=True)
            return
        own_presence = result[0]
        if 201 in own_presence["muc"]["status_codes"]:
            form = self.plugin["xep_0004"].make_form(ftype="submit")
            await muc.set_room_config(room, form)
        print(f"joined {room}", flush=True)

    async def commands(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        while True:
            line = (await reader.readline()).decode().rstrip("\n")
            if not line or line == "quit":
                self.disconnect()
                return
            verb, _, rest = line.partition(" ")
            if verb == "forget":
                try:
                    result = self.del_roster_item(rest)
                    if result is not None:
                        await result
                except slixmpp.exceptions.IqError:
                    pass  # not in the roster: nothing to forget
                print(f"forgot {rest}", flush=True)
                continue
            if verb == "join":
                room, _, nick = rest.partition(" ")
                asyncio.ensure_future(self.join(room, nick))
                continue
            if verb == "groupchat":
                room, _, body = rest.partition(" ")
                self.make_message(mto=room, mbody=body, mtype="groupchat").send()
                print(f"sent groupchat {room}", flush=True)
                continue
            if verb == "kick":
                room, _, nick = rest.partition(" ")
                try:
                    await self.plugin["xep_0045"].set_role(room, nick, "none", timeout=10)
                    print(f"kicked {nick}", flush=True)
                except (slixmpp.exceptions.IqError, slixmpp.exceptions.IqTimeout) as e:
                    print(f"error kick {nick}: {e}", flush=True)
                continue
            if verb == "show":
                show, _, status = rest.partition(" ")
                self.send_presence(pshow=show, pstatus=status)
                print(f"sent show {show}", flush=True)
                continue
            if verb == "presence":
                to, _, ptype = rest.partition(" ")
                self.send_presence(pto=to, ptype=ptype)
                print(f"sent presence {ptype}", flush=True)
                continue
            msg_id = None
            if verb == "send-id":
                msg_id, _, rest = rest.partition(" ")
            elif verb != "send":
                print(f"error unknown command {verb}", flush=True)
                continue
            to, _, body = rest.partition(" ")
            msg = self.make_message(mto=to, mbody=body, mtype="chat")
            if msg_id:
                msg["id"] = msg_id
            msg.send()
            print(f"sent {msg['id']}", flush=True)


def main():
    jid, password, server = sys.argv[1:4]
    host, port = server.rsplit(":", 1)
    peer = Peer(jid, password)
    peer.enable_plaintext = True
    peer.enable_starttls = False
    peer.enable_direct_tls = False
    peer.plugin["feature_mechanisms"].unencrypted_plain = True
    peer.connect(host=host, port=int(port))
    peer.add_event_handler("disconnected", lambda _: peer.loop.stop())
    try:
        peer.loop.run_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
