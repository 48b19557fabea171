#!/usr/bin/env python3
"""A GPU worker as SLEAP-RTC's are: an aiortc peer that registers with
rtcsignald, answers a client's offer and echoes what arrives on the data
channel ("done: " + text, as docs/protocol.md's browser worker does), and
sends a message of its own.  Prints one line per event for the test.
Usage: aiortc-worker.py WS_URL ROOM PEER_ID HELLO"""
import asyncio
import json
import sys

import aioice.ice
import websockets
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

# Host candidates on loopback only: the test's traffic stays on 127.0.0.1.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

URL, ROOM, PEER_ID, HELLO = sys.argv[1:5]


def say(*words):
    print(*words, flush=True)


async def main():
    async with websockets.connect(URL) as ws:
        await ws.send(json.dumps({
            "type": "register", "peer_id": PEER_ID, "room_id": ROOM, "role": "worker",
            "metadata": {"tags": ["gpu"], "properties": {"gpu_memory_mb": 16384}}}))
        pc = None
        ice = []
        async for text in ws:
            msg = json.loads(text)
            if msg["type"] == "registered_auth":
                # aiortc 1.4 takes TURN urls only without "?transport="
                ice = [RTCIceServer(urls=[u.split("?")[0] for u in s["urls"]],
                                    username=s.get("username"), credential=s.get("credential"))
                       for s in msg["ice_servers"]]
                say("registered", PEER_ID)
            elif msg["type"] == "offer":
                pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
                client = msg["sender"]

                @pc.on("datachannel")
                def on_channel(channel):
                    say("channel", channel.label)

                    @channel.on("message")
                    def on_message(data):
                        say("received", data)
                        channel.send("done: " + data)
                        channel.send(HELLO)

                await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                await ws.send(json.dumps({"type": "answer", "target": client,
                                          "sdp": pc.localDescription.sdp}))
                say("answered", client)
            elif msg["type"] == "candidate" and pc is not None:
                c = msg["candidate"]
                if c.get("candidate"):
                    cand = candidate_from_sdp(c["candidate"].split(":", 1)[1])
                    cand.sdpMid = c.get("sdpMid")
                    cand.sdpMLineIndex = c.get("sdpMLineIndex")
                    await pc.addIceCandidate(cand)
            elif msg["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif msg["type"] == "error":
                say("error", msg.get("code"), msg.get("message"))
            # The test ends this process (SIGTERM) once it has seen the data.
        if pc is not None:
            await pc.close()


asyncio.run(main())
