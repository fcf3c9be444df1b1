// The tab's link to the studio server: one WebSocket (session messages, live frames) plus HTTP helpers for
// files. The session id lives in sessionStorage, so a reload of this tab continues its session while other
// tabs get their own.

const SESSION_KEY = "dragkit.session";

export class Connection {
  /**
   * @param {(msg: object) => void} onMessage  every server message (already parsed)
   * @param {(state: "connecting"|"open"|"closed", detail?: string) => void} onStatus
   */
  constructor(onMessage, onStatus) {
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.ws = null;
    this.session = sessionStorage.getItem(SESSION_KEY);
    this.nextId = 1;
    this.retries = 0;
    this.giveUp = false;
  }

  open() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.session ? `?session=${encodeURIComponent(this.session)}` : "";
    const ws = new WebSocket(`${proto}//${location.host}/ws${query}`);
    this.ws = ws;
    this.onStatus("connecting");
    ws.onopen = () => {
      this.retries = 0;
      this.onStatus("open");
    };
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg.type === "hello") {
        this.session = msg.session;
        sessionStorage.setItem(SESSION_KEY, msg.session);
      } else if (msg.type === "error" && (msg.code === "no_session" || msg.code === "expired")) {
        // Our session is gone: start a fresh one on the next connection.
        this.session = null;
        sessionStorage.removeItem(SESSION_KEY);
      } else if (msg.type === "error" && msg.code === "replaced") {
        // The same session was opened by another tab (a duplicated tab): let that one have it.
        this.giveUp = true;
        sessionStorage.removeItem(SESSION_KEY);
      }
      this.onMessage(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.giveUp) {
        this.onStatus("closed", "session opened in another tab — reload for a new one");
        return;
      }
      this.retries += 1;
      if (this.retries > 20) {
        this.onStatus("closed", "server unreachable — reload to retry");
        return;
      }
      this.onStatus("connecting", "reconnecting…");
      setTimeout(() => this.open(), Math.min(250 * this.retries, 3000));
    };
  }

  get ready() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send one client message; returns its id (echoed by the server as reply_to), or null when offline. */
  send(msg) {
    if (!this.ready) return null;
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ ...msg, id }));
    return id;
  }

  url(path) {
    return `/api/sessions/${encodeURIComponent(this.session)}/${path}`;
  }

  /** GET a file of this session and hand it to the browser as a download; throws Error(message) on 4xx/5xx. */
  async download(path) {
    const res = await fetch(this.url(path));
    if (!res.ok) throw new Error(await errorText(res));
    const blob = await res.blob();
    const disposition = res.headers.get("content-disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const name = match ? match[1] : path;
    const href = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = href;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10_000);
    return { name, size: blob.size, type: blob.type };
  }

  /** POST a raw body (a File) to this session; returns the JSON answer; throws Error(message) on failure. */
  async upload(path, body) {
    const res = await fetch(this.url(path), {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body,
    });
    if (!res.ok) throw new Error(await errorText(res));
    return res.json();
  }
}

async function errorText(res) {
  try {
    const body = await res.json();
    if (body && body.error) return body.error.message;
  } catch {
    // not JSON
  }
  return `${res.status} ${res.statusText}`;
}
