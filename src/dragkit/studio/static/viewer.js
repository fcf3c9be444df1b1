// The image and everything drawn over it: handles (red), targets (blue), arrows, the pending handle, the mask
// tint and the brush. Pointer input becomes intents (addPoint, movePoint, removePoint, stroke...) that the app
// sends to the server; the server's state is the only truth, the viewer just draws it.
//
// Coordinates: points are (x, y) image pixels with pixel centres at integers, 0 ≤ x ≤ W−1, 0 ≤ y ≤ H−1.

const HIT_RADIUS = 10; // CSS pixels around a point that grab it
const DRAG_THRESHOLD = 5; // CSS pixels a press must move to count as a drag (handle → target in one gesture)
const MAX_STROKE_POINTS = 2000; // a longer stroke is sent in pieces

export class Viewer {
  /**
   * @param {HTMLCanvasElement} image  the image canvas (its pixel size is the image size)
   * @param {HTMLCanvasElement} overlay  the canvas drawn over it at screen resolution
   * @param {object} intents  callbacks: addPoint(h, t), movePoint(i, {handle?, target?}), removePoint(i),
   *   select(i|null), stroke(points, radius, mode), message(text)
   */
  constructor(image, overlay, intents) {
    this.image = image;
    this.overlay = overlay;
    this.intents = intents;
    this.ctx = image.getContext("2d");
    this.octx = overlay.getContext("2d");
    this.width = 0;
    this.height = 0;
    this.handles = [];
    this.targets = [];
    this.selected = null;
    this.pending = null; // a handle waiting for its target
    this.gesture = null; // the pointer interaction in progress
    this.cursor = null; // last pointer position (image pixels), for the brush outline
    this.tool = "points";
    this.brushMode = "movable";
    this.radius = 20;
    this.showMask = true;
    this.maskLayer = null; // canvas with the tinted mask, image-sized
    this.maskUrl = null;
    this.frameSeq = 0;
    this.drawnSeq = 0;
    this.pendingStrokes = []; // strokes sent but not yet reflected in a server mask

    overlay.addEventListener("pointerdown", (e) => this.onDown(e));
    overlay.addEventListener("pointermove", (e) => this.onMove(e));
    overlay.addEventListener("pointerup", (e) => this.onUp(e));
    overlay.addEventListener("pointercancel", () => this.cancelGesture());
    overlay.addEventListener("pointerleave", () => {
      this.cursor = null;
      this.draw();
    });
    overlay.addEventListener("contextmenu", (e) => this.onContextMenu(e));
    new ResizeObserver(() => this.layout()).observe(image.parentElement.parentElement);
  }

  // -- image ------------------------------------------------------------------------------------------------
  /** Show an image (a data URL); newer calls win even if an older one decodes later. */
  async setImage(url) {
    const seq = ++this.frameSeq;
    const img = new Image();
    img.src = url;
    try {
      await img.decode();
    } catch {
      return false;
    }
    if (seq < this.drawnSeq) return false;
    this.drawnSeq = seq;
    if (img.naturalWidth !== this.image.width || img.naturalHeight !== this.image.height) {
      this.image.width = img.naturalWidth;
      this.image.height = img.naturalHeight;
      this.layout();
    }
    this.ctx.drawImage(img, 0, 0);
    return true;
  }

  setSize(width, height) {
    if (width === this.width && height === this.height) return;
    this.width = width;
    this.height = height;
    if (this.image.width !== width || this.image.height !== height) {
      this.image.width = width;
      this.image.height = height;
    }
    this.layout();
  }

  /** Fit the image into the stage, keeping its aspect ratio; crisp pixels when enlarged a lot. */
  layout() {
    const stage = this.image.parentElement.parentElement;
    const W = this.width || this.image.width;
    const H = this.height || this.image.height;
    const availW = Math.max(64, stage.clientWidth - 32);
    const availH = Math.max(64, stage.clientHeight - 110);
    const scale = Math.min(availW / W, availH / H);
    const cssW = Math.max(1, Math.floor(W * scale));
    const cssH = Math.max(1, Math.floor(H * scale));
    this.image.style.width = `${cssW}px`;
    this.image.style.height = `${cssH}px`;
    this.image.classList.toggle("pixelated", scale >= 3);
    const dpr = window.devicePixelRatio || 1;
    this.overlay.width = Math.round(cssW * dpr);
    this.overlay.height = Math.round(cssH * dpr);
    this.draw();
  }

  // -- state from the server ----------------------------------------------------------------------------------
  setPoints(handles, targets) {
    this.handles = handles.map((p) => [p[0], p[1]]);
    this.targets = targets.map((p) => [p[0], p[1]]);
    if (this.selected !== null && this.selected >= this.handles.length) this.selected = null;
    this.draw();
  }

  /** The server's mask: a greyscale PNG data URL (255 = movable) or null. */
  async setMask(url) {
    this.maskUrl = url;
    this.pendingStrokes = [];
    if (!url) {
      this.maskLayer = null;
      this.draw();
      return;
    }
    const img = new Image();
    img.src = url;
    try {
      await img.decode();
    } catch {
      return;
    }
    if (this.maskUrl !== url) return;
    const layer = document.createElement("canvas");
    layer.width = img.naturalWidth;
    layer.height = img.naturalHeight;
    const lctx = layer.getContext("2d");
    lctx.drawImage(img, 0, 0);
    const data = lctx.getImageData(0, 0, layer.width, layer.height);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i] > 127) {
        // movable: a light green veil
        px[i] = 60; px[i + 1] = 200; px[i + 2] = 110; px[i + 3] = 28;
      } else {
        // fixed: darkened
        px[i] = 0; px[i + 1] = 0; px[i + 2] = 0; px[i + 3] = 120;
      }
    }
    lctx.putImageData(data, 0, 0);
    this.maskLayer = layer;
    this.draw();
  }

  // -- coordinates --------------------------------------------------------------------------------------------
  get scale() {
    const rect = this.overlay.getBoundingClientRect();
    return rect.width / (this.width || 1);
  }

  toImage(e) {
    const rect = this.overlay.getBoundingClientRect();
    const x = ((e.clientX - rect.left) / rect.width) * this.width - 0.5;
    const y = ((e.clientY - rect.top) / rect.height) * this.height - 0.5;
    return [clamp(round1(x), 0, this.width - 1), clamp(round1(y), 0, this.height - 1)];
  }

  toScreen(p) {
    // overlay canvas pixels (device pixels)
    const sx = this.overlay.width / (this.width || 1);
    const sy = this.overlay.height / (this.height || 1);
    return [(p[0] + 0.5) * sx, (p[1] + 0.5) * sy];
  }

  hit(e) {
    const rect = this.overlay.getBoundingClientRect();
    const cx = e.clientX - rect.left;
    const cy = e.clientY - rect.top;
    const s = rect.width / (this.width || 1);
    let best = null;
    let bestD = HIT_RADIUS;
    const test = (list, kind) => {
      list.forEach((p, index) => {
        const d = Math.hypot((p[0] + 0.5) * s - cx, (p[1] + 0.5) * s - cy);
        if (d <= bestD) {
          bestD = d;
          best = { index, kind };
        }
      });
    };
    test(this.handles, "handle");
    test(this.targets, "target");
    return best;
  }

  // -- pointer gestures -----------------------------------------------------------------------------------------
  onDown(e) {
    if (!this.width || e.button !== 0) return;
    this.overlay.setPointerCapture(e.pointerId);
    const p = this.toImage(e);
    const start = [e.clientX, e.clientY];
    if (this.tool === "mask") {
      this.gesture = { kind: "stroke", points: [p] };
    } else {
      const hit = this.hit(e);
      if (hit) {
        this.selected = hit.index;
        this.intents.select(hit.index);
        this.gesture = { kind: "move", hit, p, start, moved: false };
      } else if (this.pending) {
        this.gesture = { kind: "target", p, start };
      } else {
        this.gesture = { kind: "new", from: p, p, start, moved: false };
      }
    }
    this.draw();
  }

  onMove(e) {
    if (!this.width) return;
    const p = this.toImage(e);
    this.cursor = p;
    const g = this.gesture;
    if (g) {
      const far = Math.hypot(e.clientX - (g.start ? g.start[0] : 0), e.clientY - (g.start ? g.start[1] : 0));
      if (g.kind === "stroke") {
        const last = g.points[g.points.length - 1];
        if (Math.hypot(p[0] - last[0], p[1] - last[1]) >= Math.max(0.5, this.radius / 4)) {
          g.points.push(p);
          if (g.points.length >= MAX_STROKE_POINTS) {
            this.flushStroke(g);
            g.points = [p];
          }
        }
      } else {
        g.p = p;
        if (far >= DRAG_THRESHOLD) g.moved = true;
      }
    }
    this.draw();
  }

  onUp(e) {
    const g = this.gesture;
    this.gesture = null;
    if (!g || !this.width) return;
    const p = this.toImage(e);
    if (g.kind === "stroke") {
      this.flushStroke(g);
    } else if (g.kind === "move") {
      if (g.moved) {
        const change = g.hit.kind === "handle" ? { handle: p } : { target: p };
        if (g.hit.kind === "handle") this.handles[g.hit.index] = p;
        else this.targets[g.hit.index] = p;
        this.intents.movePoint(g.hit.index, change);
      }
    } else if (g.kind === "target") {
      this.intents.addPoint(this.pending, p);
      this.pending = null;
    } else if (g.kind === "new") {
      if (g.moved) {
        this.intents.addPoint(g.from, p);
      } else {
        this.pending = g.from;
        this.selected = null;
        this.intents.select(null);
      }
    }
    this.draw();
  }

  flushStroke(g) {
    const pts = g.points.slice();
    this.pendingStrokes.push({ points: pts, radius: this.radius, mode: this.brushMode });
    this.intents.stroke(pts, this.radius, this.brushMode);
  }

  onContextMenu(e) {
    e.preventDefault();
    if (this.tool !== "points") return;
    const hit = this.hit(e);
    if (hit) this.intents.removePoint(hit.index);
  }

  cancelGesture() {
    this.gesture = null;
    this.pending = null;
    this.draw();
  }

  // -- drawing -----------------------------------------------------------------------------------------------
  draw() {
    const c = this.octx;
    const { width: cw, height: ch } = this.overlay;
    c.clearRect(0, 0, cw, ch);
    if (!this.width) return;
    const dpr = window.devicePixelRatio || 1;
    if (this.showMask && this.maskLayer) {
      c.imageSmoothingEnabled = false;
      c.drawImage(this.maskLayer, 0, 0, cw, ch);
    }
    if (this.showMask) for (const s of this.pendingStrokes) this.drawStroke(s.points, s.radius, s.mode);
    const g = this.gesture;
    if (g && g.kind === "stroke") this.drawStroke(g.points, this.radius, this.brushMode);

    const handles = this.handles.map((p) => p.slice());
    const targets = this.targets.map((p) => p.slice());
    if (g && g.kind === "move" && g.moved) {
      (g.hit.kind === "handle" ? handles : targets)[g.hit.index] = g.p;
    }
    const r = Math.max(4, 5 * dpr);
    handles.forEach((h, i) => {
      this.drawArrow(h, targets[i], "rgba(255,255,255,0.9)", 2 * dpr);
    });
    handles.forEach((h, i) => {
      const sel = this.selected === i;
      this.drawDot(targets[i], r, "#3f7bff", sel);
      this.drawDot(h, r, "#ff4b4b", sel);
      this.drawLabel(h, String(i + 1), r);
    });
    if (this.pending) {
      this.drawDot(this.pending, r, "#ff4b4b", true);
      const to = g && g.kind === "target" ? g.p : this.cursor;
      if (to && this.tool === "points") this.drawArrow(this.pending, to, "rgba(255,255,255,0.6)", 2 * dpr, true);
    }
    if (g && g.kind === "new" && g.moved) {
      this.drawArrow(g.from, g.p, "rgba(255,255,255,0.9)", 2 * dpr);
      this.drawDot(g.from, r, "#ff4b4b", false);
      this.drawDot(g.p, r, "#3f7bff", false);
    }
    if (this.tool === "mask" && this.cursor) {
      const [x, y] = this.toScreen(this.cursor);
      const rr = this.radius * (cw / this.width);
      c.beginPath();
      c.arc(x, y, rr, 0, Math.PI * 2);
      c.strokeStyle = this.brushMode === "movable" ? "#46dc78" : "#ffb547";
      c.lineWidth = 1.5 * dpr;
      c.stroke();
    }
  }

  drawStroke(points, radius, mode) {
    const c = this.octx;
    const s = this.overlay.width / this.width;
    c.save();
    c.strokeStyle = c.fillStyle = mode === "movable" ? "rgba(70,220,120,0.35)" : "rgba(0,0,0,0.45)";
    c.lineWidth = 2 * radius * s;
    c.lineCap = c.lineJoin = "round";
    c.beginPath();
    points.forEach((p, i) => {
      const [x, y] = this.toScreen(p);
      if (i === 0) c.moveTo(x, y);
      else c.lineTo(x, y);
    });
    if (points.length === 1) {
      const [x, y] = this.toScreen(points[0]);
      c.arc(x, y, radius * s, 0, Math.PI * 2);
      c.fill();
    } else {
      c.stroke();
    }
    c.restore();
  }

  drawDot(p, r, color, selected) {
    const c = this.octx;
    const [x, y] = this.toScreen(p);
    c.beginPath();
    c.arc(x, y, r, 0, Math.PI * 2);
    c.fillStyle = color;
    c.fill();
    c.lineWidth = selected ? 3 : 1.5;
    c.strokeStyle = selected ? "#ffe14d" : "#fff";
    c.stroke();
  }

  drawLabel(p, text, r) {
    const c = this.octx;
    const [x, y] = this.toScreen(p);
    const dpr = window.devicePixelRatio || 1;
    c.font = `${11 * dpr}px system-ui, sans-serif`;
    c.fillStyle = "#fff";
    c.strokeStyle = "#000";
    c.lineWidth = 3;
    c.strokeText(text, x + r + 2, y - r - 2);
    c.fillText(text, x + r + 2, y - r - 2);
  }

  drawArrow(from, to, color, width, dashed = false) {
    const c = this.octx;
    const [x0, y0] = this.toScreen(from);
    const [x1, y1] = this.toScreen(to);
    const len = Math.hypot(x1 - x0, y1 - y0);
    if (len < 1) return;
    const head = Math.min(14 * (window.devicePixelRatio || 1), len * 0.5);
    const ang = Math.atan2(y1 - y0, x1 - x0);
    c.save();
    c.strokeStyle = c.fillStyle = color;
    c.lineWidth = width;
    if (dashed) c.setLineDash([6, 5]);
    c.beginPath();
    c.moveTo(x0, y0);
    c.lineTo(x1 - head * 0.8 * Math.cos(ang), y1 - head * 0.8 * Math.sin(ang));
    c.stroke();
    c.setLineDash([]);
    c.beginPath();
    c.moveTo(x1, y1);
    c.lineTo(x1 - head * Math.cos(ang - 0.45), y1 - head * Math.sin(ang - 0.45));
    c.lineTo(x1 - head * Math.cos(ang + 0.45), y1 - head * Math.sin(ang + 0.45));
    c.closePath();
    c.fill();
    c.restore();
  }
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

function round1(v) {
  return Math.round(v * 10) / 10;
}
