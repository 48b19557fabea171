// Test harness, loaded before docs/protocol.md's browser example (which
// runs unchanged after it).  It only changes the environment the example
// sees: its WebSocket URL points at the daemon under test, its
// RTCPeerConnections get the test's ICE transport policy, and what the
// test inspects (messages, data channels, connections) is recorded.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const docUrl = "wss://signal.example.org/";
  const testUrl = params.get("ws");
  const relay = params.get("relay") === "1";
  const h = { rx: [], channels: [], pcs: [], data: [], errors: [], waiters: [] };
  window.__h = h;

  // Resolve waiters whose condition now holds (every recorded event calls it).
  h.poke = () => {
    h.waiters = h.waiters.filter((w) => {
      const v = w.cond();
      if (v) w.resolve(v);
      return !v;
    });
  };
  // A promise of cond()'s first truthy value, rejected after ms.
  h.until = (cond, ms, what) => new Promise((resolve, reject) => {
    const v = cond();
    if (v) return resolve(v);
    const w = { cond, resolve };
    h.waiters.push(w);
    setTimeout(() => {
      h.waiters = h.waiters.filter((x) => x !== w);
      reject(new Error("timed out waiting for " + what));
    }, ms);
  });

  window.addEventListener("error", (e) => h.errors.push(String(e.message)));
  window.addEventListener("unhandledrejection", (e) => h.errors.push(String(e.reason)));

  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(url, protocols) {
      super(url === docUrl && testUrl ? testUrl : url, protocols);
      this.addEventListener("message", (e) => {
        try { h.rx.push(JSON.parse(e.data)); } catch (err) { h.errors.push("bad JSON " + e.data); }
        h.poke();
      });
    }
  };

  const track = (ch) => {
    h.channels.push(ch);
    ch.addEventListener("open", h.poke);
    ch.addEventListener("message", (e) => { h.data.push(String(e.data)); h.poke(); });
    h.poke();
  };
  const NativePC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends NativePC {
    constructor(config) {
      super(relay ? { ...config, iceTransportPolicy: "relay" } : config);
      h.pcs.push(this);
      this.addEventListener("datachannel", (e) => track(e.channel));
      this.addEventListener("connectionstatechange", h.poke);
    }
    createDataChannel(...args) {
      const ch = super.createDataChannel(...args);
      track(ch);
      return ch;
    }
  };

  // The candidate types of the pair the last connection selected.
  h.selectedPair = async () => {
    const stats = await h.pcs[h.pcs.length - 1].getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId)
        pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
    return { local: local.candidateType, remote: remote.candidateType,
             localAddress: local.address, remoteAddress: remote.address,
             bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived };
  };
})();
