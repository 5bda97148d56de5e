// automem report: renders the embedded JSON (diagnostics, plots, replay). No libraries, no network.
(function () {
  'use strict';
  const D = JSON.parse(document.getElementById('report-data').textContent);
  const SVGNS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#2f6fde', '#e0730f', '#1a9e5a', '#c62880', '#7b61ff', '#8c6d1f', '#00a3a3', '#d23c3c',
    '#5a6b8c', '#9a9a00'];
  const OP_COLORS = {
    APPEND: '#2f6fde', WRITE: '#1a4fa8', UPSERT: '#6f9cf0', REPLACE: '#9bb8ee', CREATE: '#b6c8e8',
    DELETE: '#5a6b8c', READ: '#1a9e5a', TAIL: '#5cc28d', SEARCH: '#00a3a3', COUNT: '#8fd6d6', LIST: '#c9e8d8',
    '(unparsed)': '#d23c3c'
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return node;
  }
  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function fmt(v) {
    if (v === null || v === undefined) return '–';
    if (typeof v !== 'number') return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e7) return String(v);
    const a = Math.abs(v);
    if (a >= 1e5) return v.toExponential(2);
    if (a >= 100) return v.toFixed(0);
    if (a >= 1) return v.toFixed(2);
    if (a >= 1e-3) return String(+v.toPrecision(3));
    return v.toExponential(1);
  }
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(+t.toFixed(10));
    return out;
  }
  function colorOf(i) { return PALETTE[i % PALETTE.length]; }
  function legend(labels, colors) {
    const box = el('div', { class: 'legend' });
    labels.forEach((l, i) => {
      const sw = el('i'); sw.style.background = colors[i];
      box.appendChild(el('span', {}, sw, l));
    });
    return box;
  }

  // A plot frame: svg, scales and axes. xs/ys are [lo, hi]; xcats (optional) are category labels.
  function frame(fig, title, xs, ys, xlabel, ylabel, xcats) {
    const W = 560, H = 260, L = 56, R = 12, T = 10, B = 38;
    fig.appendChild(el('figcaption', {}, title));
    const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': title });
    const x = v => L + (xcats ? (v + 0.5) / xcats.length : (v - xs[0]) / ((xs[1] - xs[0]) || 1)) * (W - L - R);
    const y = v => H - B - (v - ys[0]) / ((ys[1] - ys[0]) || 1) * (H - T - B);
    const axis = svgEl('g', { class: 'axis' });
    axis.appendChild(svgEl('line', { x1: L, x2: W - R, y1: H - B, y2: H - B }));
    axis.appendChild(svgEl('line', { x1: L, x2: L, y1: T, y2: H - B }));
    for (const t of niceTicks(ys[0], ys[1], 5)) {
      axis.appendChild(svgEl('line', { x1: L - 4, x2: L, y1: y(t), y2: y(t) }));
      axis.appendChild(svgEl('line', { x1: L, x2: W - R, y1: y(t), y2: y(t), stroke: '#eef0f4' }));
      axis.appendChild(svgEl('text', { x: L - 6, y: y(t) + 4, 'text-anchor': 'end' }, fmt(t)));
    }
    if (xcats) {
      xcats.forEach((c, i) => axis.appendChild(
        svgEl('text', { x: x(i), y: H - B + 14, 'text-anchor': 'middle' }, c.length > 28 ? c.slice(0, 27) + '…' : c)));
    } else {
      for (const t of niceTicks(xs[0], xs[1], 6)) {
        axis.appendChild(svgEl('line', { x1: x(t), x2: x(t), y1: H - B, y2: H - B + 4 }));
        axis.appendChild(svgEl('text', { x: x(t), y: H - B + 15, 'text-anchor': 'middle' }, fmt(t)));
      }
    }
    axis.appendChild(svgEl('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, xlabel));
    axis.appendChild(svgEl('text', { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`,
      'text-anchor': 'middle' }, ylabel));
    svg.appendChild(axis);
    fig.appendChild(svg);
    return { svg, x, y };
  }

  function emptyPlot(fig, title) {
    fig.appendChild(el('figcaption', {}, title));
    fig.appendChild(el('p', { class: 'muted' }, 'no data'));
  }

  // Progression distribution per group: every episode a dot (jittered), the mean and its 95% interval.
  function stripPlot(fig, title, data) {
    const labels = Object.keys(data);
    if (!labels.length) return emptyPlot(fig, title);
    const all = labels.flatMap(l => data[l]);
    const f = frame(fig, title, null, [0, Math.max(1, ...all)], 'group', 'final progression', labels);
    labels.forEach((l, i) => {
      data[l].forEach((v, k) => {
        const jitter = ((k * 0.618034) % 1 - 0.5) * 40;
        f.svg.appendChild(svgEl('circle', { cx: f.x(i) + jitter, cy: f.y(v), r: 3, fill: colorOf(i),
          'fill-opacity': 0.55 }));
      });
      const g = D.groups.find(r => r.label === l);
      if (g && g.progression !== null) {
        f.svg.appendChild(svgEl('line', { x1: f.x(i) - 30, x2: f.x(i) + 30, y1: f.y(g.progression),
          y2: f.y(g.progression), stroke: '#111', 'stroke-width': 2 }));
        if (g.progression_lo !== null) {
          f.svg.appendChild(svgEl('line', { x1: f.x(i) + 34, x2: f.x(i) + 34, y1: f.y(g.progression_lo),
            y2: f.y(g.progression_hi), stroke: '#111', 'stroke-width': 1.5 }));
        }
      }
    });
    fig.appendChild(el('div', { class: 'muted' }, 'dots: episodes; bar: mean; vertical line: 95% interval'));
  }

  function linePlot(fig, title, series, xlabel, ylabel) {
    const labels = Object.keys(series).filter(l => series[l].length);
    if (!labels.length) return emptyPlot(fig, title);
    const pts = labels.flatMap(l => series[l]);
    const xs = [Math.min(...pts.map(p => p[0])), Math.max(1, ...pts.map(p => p[0]))];
    const top = Math.max(...pts.map(p => p[1]));
    const ys = [0, top > 0 ? top * 1.05 : 1];
    const f = frame(fig, title, xs, ys, xlabel, ylabel);
    labels.forEach((l, i) => {
      const d = series[l].map((p, k) => `${k ? 'L' : 'M'}${f.x(p[0]).toFixed(1)},${f.y(p[1]).toFixed(1)}`).join('');
      f.svg.appendChild(svgEl('path', { d, fill: 'none', stroke: colorOf(i), 'stroke-width': 2 }));
    });
    fig.appendChild(legend(labels, labels.map((_, i) => colorOf(i))));
  }

  // Operation mix: the share of each operation in each group (stacked to 100%).
  function stackedBars(fig, title, mix) {
    const labels = Object.keys(mix);
    if (!labels.length) return emptyPlot(fig, title);
    const ops = [...new Set(labels.flatMap(l => Object.keys(mix[l])))].sort();
    const f = frame(fig, title, null, [0, 1], 'group', 'share of operations', labels);
    const bw = Math.min(60, 300 / labels.length);
    labels.forEach((l, i) => {
      const total = Object.values(mix[l]).reduce((a, b) => a + b, 0) || 1;
      let acc = 0;
      for (const op of ops) {
        const share = (mix[l][op] || 0) / total;
        if (!share) continue;
        const rect = svgEl('rect', { x: f.x(i) - bw / 2, width: bw, y: f.y(acc + share), height: f.y(acc) - f.y(acc + share),
          fill: OP_COLORS[op] || '#999' });
        rect.appendChild(svgEl('title', {}, `${op}: ${mix[l][op]} (${(100 * share).toFixed(1)}%)`));
        f.svg.appendChild(rect);
        acc += share;
      }
    });
    fig.appendChild(legend(ops, ops.map(o => OP_COLORS[o] || '#999')));
  }

  function renderHeader() {
    document.getElementById('subtitle').textContent =
      `${D.n_episodes} episodes · grouped by ${D.by.join(', ') || 'nothing'} · generated ${D.generated_at}`;
    const notes = document.getElementById('notes');
    for (const n of D.notes) notes.appendChild(el('li', {}, n));
  }

  function renderDiagnostics() {
    const table = document.getElementById('diag-table');
    const head = el('tr', {}, el('th', {}, 'measure'));
    for (const g of D.groups) head.appendChild(el('th', {}, g.label));
    table.appendChild(head);
    const row = (name, cells, doc) => {
      const tr = el('tr', {}, el('td', doc ? { title: doc } : {}, name));
      cells.forEach(c => tr.appendChild(c));
      table.appendChild(tr);
    };
    row('episodes', D.groups.map(g => el('td', {}, fmt(g.episodes))));
    row('steps', D.groups.map(g => el('td', {}, fmt(g.steps))));
    for (const m of D.measures) {
      row(m.name, D.groups.map(g => el('td', {}, fmt(g[m.name]), ' ',
        el('span', { class: 'ci' }, g[m.name + '_lo'] === null ? '' : `[${fmt(g[m.name + '_lo'])}, ${fmt(g[m.name + '_hi'])}]`))),
      `${m.doc} (${m.better} is better)`);
    }
  }

  function renderComparison() {
    const C = D.comparison;
    if (!C || !C.rows.length) return;
    document.getElementById('comparison').hidden = false;
    document.getElementById('nav-comparison').hidden = false;
    const paired = C.rows.some(r => r.paired);
    document.getElementById('compare-caption').textContent =
      `Each value of ${C.column} (B) against the baseline ${C.rows[0].a} (A): B \u2212 A with its 95% bootstrap ` +
      `interval, ${paired ? 'paired by seed' : 'unpaired'}. better/worse: the interval excludes 0.`;
    const table = document.getElementById('compare-table');
    table.appendChild(el('tr', {}, ...['A', 'B', 'measure', 'A value', 'B value', 'B \u2212 A [95% CI]', 'verdict']
      .map(h => el('th', {}, h))));
    const doc = Object.fromEntries(D.measures.map(m => [m.name, `${m.doc} (${m.better} is better)`]));
    for (const r of C.rows) {
      const ci = r.diff_lo === null ? '' : ` [${fmt(r.diff_lo)}, ${fmt(r.diff_hi)}]`;
      table.appendChild(el('tr', { class: `verdict-${r.verdict}` },
        el('td', {}, String(r.a)), el('td', {}, String(r.b)), el('td', { title: doc[r.measure] || '' }, r.measure),
        el('td', {}, fmt(r.value_a)), el('td', {}, fmt(r.value_b)),
        el('td', {}, fmt(r.diff), el('span', { class: 'ci' }, ci)), el('td', {}, r.verdict)));
    }
  }

  function renderEpisodes() {
    const table = document.getElementById('episode-table');
    if (!D.episodes.length) return;
    if (D.episodes.length < D.n_episodes) {
      table.parentNode.insertBefore(el('p', { class: 'muted' },
        `${D.episodes.length} of ${D.n_episodes} episodes, sampled at random (see the notes at the top)`), table);
    }
    const cols = Object.keys(D.episodes[0]);
    table.appendChild(el('tr', {}, ...cols.map(c => el('th', {}, c))));
    for (const r of D.episodes.slice(0, 2000)) table.appendChild(el('tr', {}, ...cols.map(c => el('td', {}, fmt(r[c])))));
  }

  // ---- lineage (Loop 1) ----------------------------------------------------------------------------------
  function signed(v) { return v === null || v === undefined ? '–' : (v > 0 ? '+' : '') + fmt(v); }

  function diffPre(text) {
    const pre = el('pre', { class: 'diff' });
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();  // the newline that ends the last line
    for (const line of lines) {
      const cls = line.startsWith('+++') || line.startsWith('---') ? 'file' : line.startsWith('+') ? 'add'
        : line.startsWith('-') ? 'del' : line.startsWith('@@') ? 'hunk' : 'ctx';
      pre.appendChild(el('span', { class: cls }, line + '\n'));
    }
    return pre;
  }

  function lineageNode(n) {
    const decision = n.decision === 'accepted' || n.decision === 'rejected' ? n.decision : 'other';
    const summary = el('summary', {}, `#${n.iteration} `,
      el('span', { class: 'sid' }, n.leaf ? '(no scaffold)' : String(n.scaffold_id)), ' ',
      el('span', { class: `dec ${decision}` }, String(n.decision)));
    if (n.mean_diff !== null && n.mean_diff !== undefined) {
      summary.appendChild(el('span', { class: 'gain' }, ` gain ${signed(n.mean_diff)}`,
        el('span', { class: 'ci' }, ` (lower ${signed(n.lower)})`)));
    }
    if (n.current) {
      summary.append(' ', el('span', { class: 'badge current', title: 'the scaffold in force after the run' }, 'in force'));
    }
    const body = el('div', { class: 'body' });
    const who = [n.reviewer && `reviewer ${n.reviewer}`, n.rule && `rule ${n.rule}`,
      n.digest_tokens !== null && n.digest_tokens !== undefined && `digest ${fmt(n.digest_tokens)} tokens`,
      n.reject_kind && `refused: ${n.reject_kind}`, n.created_at].filter(Boolean).join(' · ');
    if (who) body.appendChild(el('div', { class: 'muted' }, who));
    if (n.reason) body.appendChild(el('div', { class: 'reason' }, el('b', {}, 'Reason: '), n.reason));
    if (n.rationale) body.appendChild(el('div', { class: 'rationale' }, el('b', {}, 'Rationale: '), n.rationale));
    if (n.n_seeds !== null && n.n_seeds !== undefined) {
      const level = n.level ? `${fmt(100 * n.level)}% ` : '';
      const rows = [
        ['seeds', fmt(n.n_seeds)], ['parent mean', fmt(n.parent_mean)], ['candidate mean', fmt(n.candidate_mean)],
        ['gain', `${signed(n.mean_diff)} [${signed(n.lower)}, ${signed(n.upper)}] ${level}interval`],
        ['p', fmt(n.p_value)], ['margin', signed(n.margin)],
        ['op error rate diff', `${signed(n.op_error_rate_diff)} [${signed(n.op_error_rate_lo)}, ${signed(n.op_error_rate_hi)}]`],
        ['redundant write rate diff',
          `${signed(n.redundant_write_rate_diff)} [${signed(n.redundant_write_rate_lo)}, ${signed(n.redundant_write_rate_hi)}]`]];
      body.appendChild(el('table', { class: 'gate' }, ...rows.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, v)))));
    }
    if (n.diff) {
      if (n.diff_cut) body.appendChild(el('div', { class: 'muted' }, 'diff cut to fit the report (see its last line)'));
      body.appendChild(diffPre(n.diff));
    } else if (n.diff_left_out) {
      body.appendChild(el('p', { class: 'muted' }, 'diff left out to keep the report under its size cap'));
    }
    return el('details', { class: 'lnode', 'data-iteration': String(n.iteration), 'data-decision': decision }, summary, body);
  }

  function renderLineage() {
    const runs = (D.lineage || []).filter(r => r.nodes.length);
    if (!runs.length) return;
    document.getElementById('lineage').hidden = false;
    document.getElementById('nav-lineage').hidden = false;
    const box = document.getElementById('lineage-trees');
    for (const run of runs) {
      const ids = new Set(run.nodes.map(n => n.iteration));
      const children = new Map();
      for (const n of run.nodes) {
        const p = n.parent !== null && ids.has(n.parent) ? n.parent : null;
        if (!children.has(p)) children.set(p, []);
        children.get(p).push(n);
      }
      const list = (parent, cls) => {
        const ul = el('ul', cls ? { class: cls } : {});
        for (const n of children.get(parent) || []) {
          const li = el('li', {}, lineageNode(n));
          if (children.has(n.iteration)) li.appendChild(list(n.iteration));
          ul.appendChild(li);
        }
        return ul;
      };
      const accepted = run.nodes.filter(n => n.decision === 'accepted').length;
      box.appendChild(el('h3', {}, `evolve run ${run.evolve} `,
        el('span', { class: 'muted' }, `${run.nodes.length} node(s), ${accepted} accepted`)));
      box.appendChild(el('div', { class: 'lineage-run', 'data-evolve': String(run.evolve) }, list(null, 'tree')));
    }
  }

  // ---- branches (automem branch) ------------------------------------------------------------------------
  function branchLabel(b, readable) {
    const what = b.diverged_at !== null && b.diverged_at !== undefined ? `diverges at step ${b.diverged_at}`
      : readable ? 'same actions as the parent' : 'parent not readable';
    return `progression ${fmt(b.progression)} · ${what}`;
  }

  // One branch point: the parent's timeline, the branch step, and a line per branch episode (SVG, no library).
  function branchSvg(pt, colorOfArm) {
    const W = 900, L = 118, R = 320, T = 18, ROW = 16;
    const H = T + ROW * (pt.branches.length + 1) + 16;
    const start = pt.parent_readable ? 0 : pt.branch_step;
    const stop = Math.max(pt.branch_step + 1, pt.parent_steps || 0, ...pt.branches.map(b => b.end));
    const x = v => L + (v - start) / ((stop - start) || 1) * (W - L - R);
    const svg = svgEl('svg', { class: 'branch-svg', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img',
      'aria-label': `branches of ${pt.parent_episode_id} at step ${pt.branch_step}`, 'data-point': String(pt.point) });
    const y0 = T;
    for (const t of niceTicks(start, stop, 8).filter(t => Number.isInteger(t))) {
      svg.appendChild(svgEl('text', { class: 'tick', x: x(t), y: 10, 'text-anchor': 'middle' }, String(t)));
    }
    const pEnd = pt.parent_readable ? pt.parent_steps : pt.branch_step;
    svg.appendChild(svgEl('text', { x: L - 6, y: y0 + 4, 'text-anchor': 'end' }, 'parent'));
    const parent = svgEl('line', { class: pt.parent_readable ? 'parent-line' : 'parent-line unread',
      x1: x(start), x2: x(Math.max(pEnd, start)), y1: y0, y2: y0 });
    parent.appendChild(svgEl('title', {}, pt.parent_readable
      ? `${pt.parent_episode_id}: steps 0..${pt.parent_steps}, final progression ${fmt(pt.parent_progression)}`
      : `${pt.parent_episode_id}: parent store not readable (${pt.parent_out})`));
    svg.appendChild(parent);
    svg.appendChild(svgEl('text', { x: W - R + 8, y: y0 + 4 }, pt.parent_readable
      ? `${pt.parent_steps} steps · progression ${fmt(pt.parent_progression)}` : 'parent not readable'));
    const yEnd = y0 + ROW * pt.branches.length + 6;
    svg.appendChild(svgEl('line', { class: 'branch-mark', x1: x(pt.branch_step), x2: x(pt.branch_step), y1: y0 - 8,
      y2: yEnd }));
    svg.appendChild(svgEl('text', { x: x(pt.branch_step), y: yEnd + 12, 'text-anchor': 'middle' },
      `branched at step ${pt.branch_step}`));
    pt.branches.forEach((b, i) => {
      const y = y0 + ROW * (i + 1), color = colorOfArm(b.arm);
      svg.appendChild(svgEl('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, `${b.arm} c${b.copy}`));
      const line = svgEl('line', { class: 'branch-line', 'data-arm': b.arm, x1: x(b.start), x2: x(Math.max(b.end, b.start)),
        y1: y, y2: y, stroke: color });
      line.appendChild(svgEl('title', {}, `${b.episode_id}: steps ${b.start}..${b.end}`));
      svg.appendChild(line);
      if (b.diverged_at !== null && b.diverged_at !== undefined) {
        const dot = svgEl('circle', { class: 'diverge', cx: x(b.diverged_at), cy: y, r: 5, fill: color,
          'data-step': String(b.diverged_at) });
        dot.appendChild(svgEl('title', {}, `step ${b.diverged_at}: ${b.action} (the parent: ${b.parent_action})`));
        svg.appendChild(dot);
      }
      svg.appendChild(svgEl('text', { x: W - R + 8, y: y + 4, fill: color }, branchLabel(b, pt.parent_readable)));
    });
    return svg;
  }

  function branchCompare(run) {
    const rows = [];
    for (const c of run.comparison) {
      if (!Object.keys(c.measures).length) {
        rows.push(el('tr', {}, el('td', {}, `${c.arm} vs ${c.reference}`), el('td', {}, 'no committed pairs'),
          el('td', {}), el('td', {}), el('td', {}), el('td', {})));
      }
      for (const [m, v] of Object.entries(c.measures)) {
        rows.push(el('tr', { 'data-arm': c.arm, 'data-measure': m }, el('td', {}, `${c.arm} vs ${c.reference}`),
          el('td', {}, m), el('td', {}, fmt(c.pairs) + (c.unpaired ? ` (+${c.unpaired} unpaired)` : '')),
          el('td', {}, fmt(v.reference)), el('td', {}, fmt(v.arm)),
          el('td', {}, signed(v.diff), el('span', { class: 'ci' }, ` [${signed(v.lo)}, ${signed(v.hi)}]`))));
      }
    }
    if (!rows.length) return el('p', { class: 'muted' }, 'one arm only: nothing to compare');
    return el('table', { class: 'branch-compare' },
      el('tr', {}, ...['arm', 'measure', 'pairs', 'reference', 'arm value', 'diff [95% CI]'].map(h => el('th', {}, h))),
      ...rows);
  }

  function renderBranches() {
    const runs = (D.branches || []).filter(r => r.points.length);
    if (!runs.length) return;
    document.getElementById('branches').hidden = false;
    document.getElementById('nav-branches').hidden = false;
    const box = document.getElementById('branch-runs');
    for (const run of runs) {
      const colorOfArm = a => colorOf(Math.max(0, run.arms.indexOf(a)));
      const div = el('div', { class: 'branch-run', 'data-run': String(run.run_id) });
      div.appendChild(el('h3', {}, `branch run ${run.run_id} `, el('span', { class: 'muted' },
        `${run.n_points} point(s), ${run.n_episodes} episode(s), arms ${run.arms.join(', ')} (reference ${run.reference})`)));
      div.appendChild(branchCompare(run));
      div.appendChild(legend(run.arms, run.arms.map(colorOfArm)));
      for (const pt of run.points) {
        const changes = Object.entries(pt.changes).filter(([, c]) => c).map(([a, c]) => `${a}: ${c}`).join(' · ');
        div.appendChild(el('div', { class: 'branch-point' },
          el('div', { class: 'head' }, `point ${pt.point}: `, el('span', { class: 'sid' }, `${pt.parent_run_id}/${pt.parent_episode_id}`),
            ` at step ${pt.branch_step}`, changes ? el('span', { class: 'muted' }, ` · ${changes}`) : null),
          branchSvg(pt, colorOfArm)));
      }
      box.appendChild(div);
    }
  }

  // ---- replay -------------------------------------------------------------------------------------------
  const replay = { ep: null, step: 0, cache: new Map() };

  // Memory files after step i: the per-step changes applied in order, with a checkpoint every 64 steps.
  function memoryAt(i) {
    const ep = replay.ep;
    let start = -1, files = {};
    for (let k = i; k >= 0; k--) {
      if (replay.cache.has(k)) { start = k; files = Object.assign({}, replay.cache.get(k)); break; }
    }
    for (let k = start + 1; k <= i; k++) {
      for (const [name, ch] of Object.entries(ep.steps[k].mem)) {
        if (ch.d) delete files[name];
        else if (ch.f !== undefined) files[name] = ch.f;
        else files[name] = (files[name] || '') + ch.a;
      }
      if (k % 64 === 0) replay.cache.set(k, Object.assign({}, files));
    }
    return files;
  }

  function renderOp(o) {
    const line = `${o.op || '?'} ${(o.args || []).map(a => a.length > 60 ? a.slice(0, 59) + '…' : a).join(' | ')}`;
    const node = el('div', { class: o.ok ? 'op' : 'op err' }, o.ok ? '✓ ' : `✗ [${o.error}] `, line);
    if (o.out) {
      // Each returned line the agent wrote names the step of the write that produced it (provenance).
      const src = new Map((o.src || []).map(([k, t]) => [k, t]));
      const out = el('span', { class: 'out' });
      o.out.split('\n').forEach((text, k) => {
        if (k) out.appendChild(document.createTextNode('\n'));
        out.appendChild(document.createTextNode(text));
        if (src.has(k)) {
          out.appendChild(el('span', { class: 'src', title: 'step of the write that produced this line' },
            ` \u2190 written at step ${src.get(k)}`));
        }
      });
      node.appendChild(out);
    }
    return node;
  }

  function renderStep() {
    const ep = replay.ep, i = replay.step, s = ep.steps[i];
    document.getElementById('step-slider').value = String(i);
    document.getElementById('step-label').textContent = `step ${s.t} (${i + 1} of ${ep.steps.length})`;
    document.getElementById('prev').disabled = i === 0;
    document.getElementById('first').disabled = i === 0;
    document.getElementById('next').disabled = i === ep.steps.length - 1;
    document.getElementById('observation').textContent = s.obs;
    const act = document.getElementById('action');
    act.replaceChildren(el('b', {}, s.action), ' ',
      s.valid ? el('span', { class: 'badge' }, 'valid') : el('span', { class: 'badge bad' }, 'invalid: default taken'),
      ` reward ${fmt(s.reward)} · progression ${fmt(s.prog)}`);
    if (s.text && s.text !== s.action) act.appendChild(el('div', { class: 'muted' }, `model wrote: ${s.text}`));
    const turns = document.getElementById('turns');
    turns.replaceChildren();
    for (const t of s.turns) {
      const box = el('div', { class: `turn ${t.phase}` }, el('div', { class: 'head' }, `${t.phase.toUpperCase()} turn ${t.turn}`));
      if (t.ops.length) t.ops.forEach(o => box.appendChild(renderOp(o)));
      else box.appendChild(el('pre', {}, t.text));
      turns.appendChild(box);
    }
    if (!s.turns.length) turns.appendChild(el('p', { class: 'muted' }, 'no model turns recorded at this step'));
    const files = memoryAt(i);
    const mem = document.getElementById('memory');
    mem.replaceChildren();
    const names = Object.keys(files).sort();
    if (!names.length) mem.appendChild(el('p', { class: 'muted' }, '(no memory files)'));
    for (const name of names) {
      const ch = s.mem[name];
      const text = files[name];
      const pre = el('pre');
      if (ch && ch.a !== undefined) {
        pre.appendChild(document.createTextNode(text.slice(0, text.length - ch.a.length)));
        pre.appendChild(el('mark', {}, ch.a));
      } else {
        pre.textContent = text;
      }
      const lines = text ? text.split('\n').length - (text.endsWith('\n') ? 1 : 0) : 0;
      const badge = ch ? el('span', { class: 'badge new' }, ch.a !== undefined ? 'appended' : 'rewritten') : null;
      mem.appendChild(el('div', { class: 'memfile', 'data-file': name },
        el('div', { class: 'head' }, `${name} `, el('span', { class: 'muted' }, `${lines} lines, ${new Blob([text]).size} bytes `), badge), pre));
    }
    for (const [name, ch] of Object.entries(s.mem)) {
      if (ch.d) mem.appendChild(el('div', { class: 'memfile' }, el('span', { class: 'badge bad' }, `${name} deleted`)));
    }
  }

  function selectEpisode(index) {
    replay.ep = D.replay[index];
    replay.cache = new Map();
    replay.step = 0;
    const ep = replay.ep;
    document.getElementById('step-slider').max = String(Math.max(0, ep.steps.length - 1));
    const m = ep.meta;
    document.getElementById('episode-meta').textContent =
      `${m.env_id} · seed ${m.seed} · scaffold ${m.scaffold_id} · memory model ${m.memory_model} · ` +
      `final progression ${fmt(m.progression)} · ${m.status}`;
    if (ep.steps.length) renderStep();
  }

  function renderReplay() {
    const select = document.getElementById('episode-select');
    if (!D.replay.length) {
      document.getElementById('replay').appendChild(el('p', { class: 'muted' }, 'no episodes to replay'));
      return;
    }
    D.replay.forEach((ep, i) => select.appendChild(el('option', { value: String(i) },
      `${ep.id} (${ep.steps.length} steps, progression ${fmt(ep.meta.progression)})`)));
    const go = i => { replay.step = Math.max(0, Math.min(replay.ep.steps.length - 1, i)); renderStep(); };
    select.addEventListener('change', () => selectEpisode(Number(select.value)));
    document.getElementById('prev').addEventListener('click', () => go(replay.step - 1));
    document.getElementById('next').addEventListener('click', () => go(replay.step + 1));
    document.getElementById('first').addEventListener('click', () => go(0));
    document.getElementById('step-slider').addEventListener('input', e => go(Number(e.target.value)));
    document.addEventListener('keydown', e => {
      if (e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT') return;
      if (e.key === 'ArrowRight') go(replay.step + 1);
      if (e.key === 'ArrowLeft') go(replay.step - 1);
    });
    selectEpisode(0);
  }

  renderHeader();
  renderDiagnostics();
  renderComparison();
  renderLineage();
  renderBranches();
  stripPlot(document.getElementById('plot-progression'), 'Progression per episode, by group', D.plots.progression);
  linePlot(document.getElementById('plot-memory'), 'Memory size over steps (mean bytes)', D.plots.memory, 'step', 'bytes');
  stackedBars(document.getElementById('plot-opmix'), 'Operation mix', D.plots.op_mix);
  linePlot(document.getElementById('plot-errors'), 'Failed operations over steps (share of ops)', D.plots.errors, 'step', 'error rate');
  renderEpisodes();
  renderReplay();
  document.body.setAttribute('data-ready', '1');
})();
