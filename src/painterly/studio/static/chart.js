// The loss curve, drawn on a <canvas> by hand: log-scale y, iteration on x, one line per term.
"use strict";

const SERIES = [
  // [column in a history row, label, colour]
  [1, "total", "#f2a65a"],
  [3, "style", "#9d8cff"],
  [2, "content", "#4fc3a1"],
  [4, "tv", "#6b7a90"],
];

function drawLossChart(canvas, rows, total) {
  const dpr = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 600;
  const cssHeight = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(cssWidth * dpr) || canvas.height !== Math.round(cssHeight * dpr)) {
    canvas.width = Math.round(cssWidth * dpr);
    canvas.height = Math.round(cssHeight * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);
  const pad = { left: 46, right: 12, top: 10, bottom: 22 };
  const w = cssWidth - pad.left - pad.right;
  const h = cssHeight - pad.top - pad.bottom;

  // Log scale only shows positive values; zero terms (e.g. tv weight 0) are left out.
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of rows) {
    for (const [col] of SERIES) {
      const v = row[col];
      if (v > 0 && Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
  }
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7385";
  if (!rows.length || !Number.isFinite(lo)) {
    ctx.fillText("The loss appears here once a run starts.", pad.left, pad.top + h / 2);
    return;
  }
  let top = Math.ceil(Math.log10(hi));
  let bottom = Math.floor(Math.log10(lo));
  if (top === bottom) top += 1;
  const maxX = Math.max(total || 0, rows[rows.length - 1][0], 1);
  const x = (it) => pad.left + (it / maxX) * w;
  const y = (v) => pad.top + ((top - Math.log10(v)) / (top - bottom)) * h;

  // Grid: one line per decade, labelled 1e-3 … 1e6; thin it out when there are many decades.
  const every = Math.ceil((top - bottom) / 6);
  ctx.strokeStyle = "#232836";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let e = bottom; e <= top; e += every) {
    const yy = Math.round(y(10 ** e)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.left, yy);
    ctx.lineTo(pad.left + w, yy);
    ctx.stroke();
    ctx.fillText(`1e${e}`, pad.left - 6, yy);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  // Iteration ticks at a round step (1, 2 or 5 times a power of ten), about five of them.
  const raw = maxX / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const tick = [1, 2, 5, 10].map((m) => m * power).find((t) => t >= raw);
  for (let it = 0; it <= maxX; it += tick) ctx.fillText(String(it), x(it), pad.top + h + 6);

  // A dashed line where the optimiser moves to a finer scale (the losses jump there).
  ctx.setLineDash([3, 4]);
  ctx.strokeStyle = "#3a4254";
  ctx.textAlign = "left";
  for (let i = 1; i < rows.length; i++) {
    if (rows[i][5] === rows[i - 1][5]) continue;
    const xx = Math.round(x(rows[i - 1][0])) + 0.5;
    ctx.beginPath();
    ctx.moveTo(xx, pad.top);
    ctx.lineTo(xx, pad.top + h);
    ctx.stroke();
    ctx.fillText(`scale ${rows[i][5] + 1}`, xx + 4, pad.top);
  }
  ctx.setLineDash([]);

  for (const [col, , colour] of SERIES) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = col === 1 ? 2 : 1.25;
    ctx.beginPath();
    let drawing = false;
    for (const row of rows) {
      const v = row[col];
      if (!(v > 0 && Number.isFinite(v))) {
        drawing = false;
        continue;
      }
      if (drawing) ctx.lineTo(x(row[0]), y(v));
      else ctx.moveTo(x(row[0]), y(v));
      drawing = true;
    }
    ctx.stroke();
  }
}

function lossLegend(element) {
  // Built node by node: the page's Content-Security-Policy refuses inline style attributes.
  const items = SERIES.map(([, label, colour]) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = colour;
    item.append(swatch, label);
    return item;
  });
  element.replaceChildren(...items);
}
