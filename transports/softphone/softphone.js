// The voicegraph browser softphone. Protocol: see voicegraph.transports.softphone.
// Playback is scheduled on the Web Audio clock; a mark is echoed only once the clock has
// passed the end of the audio sent before it, so the server learns what was actually heard.
"use strict";

const RATE = 16000;
const JITTER = 0.06; // seconds of audio buffered before playback starts (network jitter)
const base = document.body.dataset.base;
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const $ = (id) => document.getElementById(id);

let ws = null;
let ctx = null;
let mic = null;
let nextTime = 0;
let pending = []; // marks: {name, at} (at: context time when the audio before it ends)
let sources = new Set();
let timer = null;
const lines = new Map(); // agent utterance id -> transcript element

function status(text) {
  $("status").textContent = text;
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

function line(role, text) {
  const div = document.createElement("div");
  div.className = role;
  div.textContent = (role === "caller" ? "You: " : "Agent: ") + text;
  $("transcript").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function showEvent(ev) {
  if (ev.kind === "transcript") {
    if (ev.role === "agent" && ev.utterance) {
      let div = lines.get(ev.utterance);
      if (!div) {
        if (!ev.text) return;
        div = line("agent", "");
        lines.set(ev.utterance, div);
      }
      div.textContent += ev.text;
      if (ev.final) lines.delete(ev.utterance);
    } else if (ev.text) {
      line(ev.role, ev.text);
    }
  } else if (ev.kind === "latency") {
    const row = document.createElement("tr");
    const ms = ev.ms;
    const cell = (v) => (v === undefined ? "-" : Math.round(v) + " ms");
    for (const v of [
      String(ev.turn),
      cell(ms.stt_final),
      cell(ms.agent_first_token),
      cell(ms.tts_first_audio),
      cell(ms.voice_to_voice),
      cell(ms.first_mark_ack),
    ]) {
      const td = document.createElement("td");
      td.textContent = v;
      row.appendChild(td);
    }
    $("latency").appendChild(row);
  }
}

function play(buffer) {
  const pcm = new Int16Array(buffer);
  if (!pcm.length) return;
  const audio = ctx.createBuffer(1, pcm.length, RATE);
  const data = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
  const src = ctx.createBufferSource();
  src.buffer = audio;
  src.connect(ctx.destination);
  const at = Math.max(nextTime, ctx.currentTime + JITTER);
  src.onended = () => {
    sources.delete(src);
    flushMarks();
  };
  src.start(at);
  sources.add(src);
  nextTime = at + audio.duration;
}

function flushMarks() {
  if (!ctx) return; // the call ended; its socket is gone too
  const now = ctx.currentTime;
  while (pending.length && pending[0].at <= now) {
    send({ type: "mark", name: pending.shift().name, played: true });
  }
}

function mark(name) {
  pending.push({ name, at: nextTime });
  flushMarks();
}

function clearPlayback() {
  flushMarks(); // what already played was heard
  for (const src of sources) {
    src.onended = null;
    src.stop();
  }
  sources = new Set();
  for (const p of pending) send({ type: "mark", name: p.name, played: false });
  pending = [];
  nextTime = 0;
  send({ type: "cleared" });
}

function onMessage(e) {
  if (typeof e.data !== "string") {
    play(e.data);
    return;
  }
  const msg = JSON.parse(e.data);
  if (msg.type === "mark") mark(msg.name);
  else if (msg.type === "clear") clearPlayback();
  else if (msg.type === "event") showEvent(msg.event);
  else if (msg.type === "started") status("in call " + msg.callId);
}

function teardown(reason) {
  if (timer) clearInterval(timer);
  timer = null;
  if (mic) mic.getTracks().forEach((t) => t.stop());
  mic = null;
  if (ctx) ctx.close();
  ctx = null;
  ws = null;
  $("call").disabled = false;
  $("hangup").disabled = true;
  status(reason);
}

async function startCall() {
  $("call").disabled = true;
  status("starting...");
  try {
    try {
      ctx = new AudioContext({ sampleRate: RATE });
    } catch (err) {
      ctx = new AudioContext(); // the worklet resamples to 16 kHz
    }
    await ctx.resume();
    await ctx.audioWorklet.addModule(base + "/worklet.js");
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
  } catch (err) {
    teardown("cannot start audio: " + err.message);
    return;
  }
  const capture = new AudioWorkletNode(ctx, "vg-capture", {
    processorOptions: { targetRate: RATE },
  });
  const mute = ctx.createGain();
  mute.gain.value = 0; // the worklet must be pulled by the graph, but not heard
  ctx.createMediaStreamSource(mic).connect(capture);
  capture.connect(mute).connect(ctx.destination);

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const sock = new WebSocket(scheme + "//" + location.host + base + "/ws");
  ws = sock;
  sock.binaryType = "arraybuffer";
  sock.onopen = () => {
    send({ type: "start", sampleRate: RATE, encoding: "pcm16", token });
    capture.port.onmessage = (e) => {
      if (sock.readyState === WebSocket.OPEN) sock.send(e.data);
    };
    $("hangup").disabled = false;
  };
  sock.onmessage = onMessage;
  sock.onclose = (e) => {
    if (ws === sock) teardown("call ended: " + (e.reason || "code " + e.code));
  };
  timer = setInterval(flushMarks, 20);
}

function hangup() {
  send({ type: "hangup" });
  if (ws) ws.close(1000, "hung up");
}

$("call").onclick = startCall;
$("hangup").onclick = hangup;
for (const key of document.querySelectorAll("#keypad button")) {
  key.onclick = () => send({ type: "dtmf", digit: key.textContent });
}
if (!token) status("no token: open the URL printed by the server (it ends in #token=...)");
else if (new URLSearchParams(location.search).get("autostart") === "1") startCall();
else status("ready");
