// Small SVG charts for the console, no library: a horizontal bar chart, with
// its numbers also in a table for screen readers.
const SVG = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function formatNumber(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 100) return Number.isInteger(v) ? String(v) : v.toFixed(1);
  return Number(v.toPrecision(digits)).toString();
}

// bars: [{label, value, highlight}]. Returns a <figure>.
export function barChart({ title, bars, unit = '', max }) {
  const fig = document.createElement('figure');
  fig.className = 'chart';
  const labelW = 220, barW = 320, valueW = 90, rowH = 22, top = 24;
  const height = top + bars.length * rowH + 6;
  const svg = el('svg', { viewBox: `0 0 ${labelW + barW + valueW} ${height}`, role: 'img', 'aria-label': title });
  svg.appendChild(el('text', { x: 4, y: 15, 'font-weight': 700 }, title));
  const top_ = max ?? Math.max(1e-12, ...bars.map((b) => Math.abs(b.value ?? 0)));
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    svg.appendChild(el('text', { x: labelW - 6, y: y + 14, 'text-anchor': 'end' }, b.label));
    const w = Math.max(1, (Math.abs(b.value ?? 0) / top_) * barW);
    svg.appendChild(el('rect', { x: labelW, y: y + 3, width: w, height: rowH - 8, rx: 3,
      class: b.highlight ? 'bar hi' : 'bar' }));
    svg.appendChild(el('text', { x: labelW + w + 6, y: y + 14, class: 'v' }, `${formatNumber(b.value)}${unit}`));
  });
  fig.appendChild(svg);
  const table = document.createElement('table');
  table.className = 'sr-only';
  const cap = document.createElement('caption');
  cap.textContent = title;
  table.appendChild(cap);
  for (const b of bars) {
    const tr = table.insertRow();
    tr.insertCell().textContent = b.label;
    tr.insertCell().textContent = `${formatNumber(b.value)}${unit}`;
  }
  fig.appendChild(table);
  return fig;
}

// A table from rows of cells; `head` names the columns. Cells are text.
export function table(head, rows, numeric = []) {
  const t = document.createElement('table');
  const thead = t.createTHead().insertRow();
  for (const h of head) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = h;
    thead.appendChild(th);
  }
  const body = t.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    r.forEach((c, i) => {
      const td = tr.insertCell();
      td.textContent = c;
      if (numeric.includes(i)) td.className = 'num';
    });
  }
  return t;
}
