// meshmaster's dashboard: polls GET /v1/status, follows GET /v1/events/stream, and starts rolling
// restarts with POST /v1/restart. Plain script, no framework, served by the daemon itself under
// `Content-Security-Policy: default-src 'self'` (so no inline code or style: colours are set through
// the CSSOM, which that policy allows).
//
// Tokens: /v1 answers only with `Authorization: Bearer <token>`. The token to read is kept in this
// tab's sessionStorage (it survives a reload, not the tab); the admin token only in a variable (gone
// with the page). Neither goes to localStorage or a cookie, so no other tab or later visit sees them.
'use strict';

(() => {
  const READ_KEY = 'meshmaster.token';
  const POLL_IDLE_MS = 2000;     // the fleet when nothing moves
  const POLL_RESTART_MS = 500;   // the progress while a restart runs
  const FULL_EVERY_MS = 2000;    // the shard map (the full answer: a row per shard) at most this often
  const EVENT_LINES = 200;       // the event tail keeps this many lines
  const RESUME_AFTER_MS = 2000;  // a dropped event stream is resumed after this pause

  const $ = (id) => document.getElementById(id);
  const ui = {
    connection: $('connection'), restartButton: $('restart-button'), forgetButton: $('forget-button'),
    tokenPanel: $('token-panel'), tokenForm: $('token-form'), tokenTitle: $('token-title'),
    tokenExplain: $('token-explain'), tokenLabel: $('token-label'), tokenInput: $('token-input'),
    tokenCancel: $('token-cancel'), tokenError: $('token-error'),
    shardsRunning: $('shards-running'), slaveCount: $('slave-count'), generation: $('generation'),
    restarts: $('restarts'), health: $('health'), problems: $('problems'),
    progress: $('restart-progress'), restartText: $('restart-text'), restartAnswer: $('restart-answer'),
    slaveRows: $('slave-rows'), map: $('shard-map'), shardDetail: $('shard-detail'), legend: $('legend'),
    streamState: $('stream-state'), events: $('events'),
  };

  // ---- tokens -------------------------------------------------------------------------------------

  let readToken = sessionStorage.getItem(READ_KEY);
  let adminToken = null;
  let formPurpose = 'read';

  function showTokenForm(purpose, error) {
    formPurpose = purpose;
    const admin = purpose === 'admin';
    ui.tokenTitle.textContent = admin ? 'Admin token' : 'Token';
    ui.tokenExplain.textContent = admin
      ? 'A rolling restart needs the admin token. It is kept in this page only, until you reload or close it.'
      : 'The API needs a token (read or admin) to show the fleet. It is kept in this tab only.';
    ui.tokenLabel.textContent = admin ? 'Admin token' : 'Token';
    ui.tokenInput.value = '';
    ui.tokenCancel.hidden = !admin;
    ui.tokenError.textContent = error || '';
    ui.tokenPanel.hidden = false;
    ui.tokenInput.focus();
  }

  function hideTokenForm() {
    ui.tokenPanel.hidden = true;
    ui.tokenError.textContent = '';
    ui.tokenInput.value = '';
  }

  ui.tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (!token) {
      ui.tokenError.textContent = 'Enter a token.';
      return;
    }
    hideTokenForm();
    if (formPurpose === 'admin') {
      adminToken = token;
      startRestart();
    } else {
      readToken = token;
      sessionStorage.setItem(READ_KEY, token);
      connect();
    }
  });
  ui.tokenCancel.addEventListener('click', () => {
    hideTokenForm();
    if (!readToken) showTokenForm('read');
  });
  ui.forgetButton.addEventListener('click', () => {
    sessionStorage.removeItem(READ_KEY);
    readToken = null;
    adminToken = null;
    disconnect('Token forgotten.');
    showTokenForm('read');
  });

  // The daemon's error text, from its JSON body ({"error": ...}) or the body itself.
  async function errorText(response) {
    const body = await response.text().catch(() => '');
    try {
      const parsed = JSON.parse(body);
      if (parsed && typeof parsed.error === 'string') return parsed.error;
    } catch (_) { /* not JSON: the text as it came */ }
    return body.trim() || response.statusText || `HTTP ${response.status}`;
  }

  function refused(status, text) {
    disconnect(`Token refused (${status}).`);
    sessionStorage.removeItem(READ_KEY);
    readToken = null;
    showTokenForm('read', `The daemon refused that token (${status}): ${text}. Enter a read or admin token.`);
  }

  // ---- connection: polling and the event stream ------------------------------------------------

  let session = 0;            // bumped on every connect/disconnect: stale loops see it and end
  let pollTimer = null;
  let lastFull = -Infinity;  // when the last full answer came (performance.now())
  let restartRunning = false;

  function setConnection(text, bad) {
    ui.connection.textContent = text;
    ui.connection.classList.toggle('bad', !!bad);
  }

  function disconnect(text) {
    session += 1;
    clearTimeout(pollTimer);
    if (streamAbort) streamAbort.abort();
    ui.restartButton.disabled = true;
    ui.forgetButton.hidden = true;
    setConnection(text || 'Not connected', true);
    ui.streamState.textContent = 'Not following the event stream.';
  }

  function connect() {
    session += 1;
    const mine = session;
    lastFull = -Infinity;
    setConnection('Connecting…');
    ui.forgetButton.hidden = false;
    poll(mine);
    follow(mine);
  }

  async function poll(mine) {
    if (mine !== session) return;
    const full = performance.now() - lastFull >= FULL_EVERY_MS;
    let next = POLL_IDLE_MS;
    try {
      const response = await fetch(full ? '/v1/status' : '/v1/status?detail=summary', {
        headers: { Authorization: `Bearer ${readToken}` }, cache: 'no-store',
      });
      if (mine !== session) return;
      if (response.status === 401) {
        const text = await errorText(response);
        if (mine === session) refused(401, text);  // once, if the stream was refused first
        return;
      }
      if (!response.ok) throw new Error(`${response.status}: ${await errorText(response)}`);
      const status = await response.json();
      if (mine !== session) return;
      if (full) lastFull = performance.now();
      render(status);
      setConnection(`Connected: master ${status.master ? status.master.id : ''} (pid ${status.master ? status.master.pid : '?'})`);
      ui.restartButton.disabled = false;
      next = restartRunning ? POLL_RESTART_MS : POLL_IDLE_MS;
    } catch (err) {
      if (mine !== session) return;
      setConnection(`Cannot read the status (${err.message}); trying again.`, true);
    }
    pollTimer = setTimeout(() => poll(mine), next);
  }

  // Right away (an event says something changed), without waiting for the timer.
  function pollSoon() {
    clearTimeout(pollTimer);
    const mine = session;
    pollTimer = setTimeout(() => poll(mine), 50);
  }

  let streamAbort = null;
  let lastEventId = null;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // EventSource cannot send an Authorization header, so the stream is read with fetch() and parsed
  // here (the text/event-stream format: blocks separated by a blank line, `field: value` lines, `:`
  // comments). After a drop it resumes with Last-Event-ID, so no event is shown twice or missed
  // while the daemon still holds it.
  async function follow(mine) {
    if (lastEventId === null) await backlog(mine);
    let dropped = false;  // a connection before this one was lost
    while (mine === session) {
      const controller = new AbortController();
      streamAbort = controller;
      try {
        const headers = { Authorization: `Bearer ${readToken}`, Accept: 'text/event-stream' };
        if (lastEventId !== null) headers['Last-Event-ID'] = lastEventId;
        const response = await fetch('/v1/events/stream', { headers, signal: controller.signal, cache: 'no-store' });
        if (mine !== session) return;
        if (response.status === 401) {
          const text = await errorText(response);
          if (mine === session) refused(401, text);  // once, if the status poll was refused first
          return;
        }
        if (!response.ok || !response.body) throw new Error(`${response.status}: ${await errorText(response)}`);
        ui.streamState.textContent = dropped && lastEventId !== null
          ? `Following the event stream (resumed after #${lastEventId}).`
          : 'Following the event stream.';
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
        throw new Error('the daemon closed the stream');
      } catch (err) {
        if (mine !== session) return;
        dropped = true;
        const from = lastEventId === null ? '' : ` from #${lastEventId}`;
        ui.streamState.textContent = `Event stream lost (${err.message}); resuming${from} in ${RESUME_AFTER_MS / 1000} s.`;
        await sleep(RESUME_AFTER_MS);
      }
    }
  }

  // The newest events the daemon holds (GET /v1/events without `since`), so that the tail is not
  // empty until something happens; the stream then goes on after the last of them. On any failure
  // the stream starts without them: the tail is a convenience, the stream is what matters.
  async function backlog(mine) {
    try {
      const response = await fetch(`/v1/events?limit=${EVENT_LINES}`, {
        headers: { Authorization: `Bearer ${readToken}` }, cache: 'no-store',
      });
      if (mine !== session || !response.ok) return;
      const body = await response.json();
      if (mine !== session || !Array.isArray(body.events)) return;
      for (const record of body.events) addEvent(record);
      const last = body.events.length ? body.events[body.events.length - 1].seq : undefined;
      const resume = body.next_since ?? last;
      if (resume !== undefined && resume !== null) lastEventId = String(resume);
    } catch (_) { /* the stream alone, from now */ }
  }

  function dispatch(block) {
    let id = null;
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;  // `: keep-alive`
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') id = value;
      else if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
    }
    if (id !== null) lastEventId = id;
    if (!data.length) return;
    let record;
    try {
      record = JSON.parse(data.join('\n'));
    } catch (_) {
      record = { event: 'unreadable', text: data.join('\n') };
    }
    if (name === 'gap') {
      // The page read too slowly and the daemon dropped records before it got them: say so, the
      // event log on disk has them.
      record = { event: 'gap', after: record.after, first_kept: record.first_kept,
        note: 'records dropped before this page read them; the event log has them' };
    }
    addEvent(record);
    onEvent(record);
  }

  // ---- the event tail ------------------------------------------------------------------------------

  const WARN = /failed|lost|killed|refused|rolled_back|orphaned|error|rejected|abandoned|truncated|^gap$/;
  const SKIP = new Set(['seq', 'time', 'mono_ms', 'event']);

  function addEvent(record) {
    const li = document.createElement('li');
    const name = String(record.event || '?');
    if (WARN.test(name)) li.className = 'warn';
    const time = typeof record.time === 'string' ? record.time.replace(/^.*T/, '').replace(/(\.\d{3})\d*Z$/, '$1Z') : '';
    const head = document.createElement('span');
    head.textContent = `${record.seq !== undefined ? `#${record.seq} ` : ''}${time} `;
    const strong = document.createElement('span');
    strong.className = 'name';
    strong.textContent = name;
    const rest = Object.keys(record).filter((k) => !SKIP.has(k))
      .map((k) => `${k}=${typeof record[k] === 'string' ? record[k] : JSON.stringify(record[k])}`).join(' ');
    li.append(head, strong, document.createTextNode(rest ? ` ${rest}` : ''));
    const list = ui.events;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 30;
    list.append(li);
    while (list.childElementCount > EVENT_LINES) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  // ---- the restart: button, answer, progress ---------------------------------------------------------

  let tracked = null;         // the restart this page follows: {id, state: running|completed|failed, ...}

  ui.restartButton.addEventListener('click', () => {
    if (adminToken) startRestart();
    else showTokenForm('admin');
  });

  function answer(text, bad) {
    ui.restartAnswer.textContent = text;
    ui.restartAnswer.classList.toggle('bad', !!bad);
  }

  async function startRestart() {
    ui.restartButton.disabled = true;
    answer('Asking for a rolling restart…');
    try {
      const response = await fetch('/v1/restart', {
        method: 'POST', headers: { Authorization: `Bearer ${adminToken}` }, cache: 'no-store',
      });
      if (response.status === 202 || response.ok) {
        const body = await response.json();
        if (!ended.has(body.restart)) tracked = { id: body.restart, state: 'running', done: 0, total: 0 };
        answer(body.queued
          ? `Restart #${body.restart} accepted: queued behind the one running.`
          : `Restart #${body.restart} accepted.`);
        restartRunning = true;
        showProgress();
        pollSoon();
      } else if (response.status === 401 || response.status === 403) {
        const text = await errorText(response);
        adminToken = null;
        answer(response.status === 401
          ? `The daemon refused that admin token (401): ${text}`
          : `That token may read but not act (403): ${text}. Use the admin token.`, true);
      } else if (response.status === 409) {
        answer(`The daemon refused the restart (409): ${await errorText(response)}`, true);
      } else {
        answer(`The restart was not started (${response.status}): ${await errorText(response)}`, true);
      }
    } catch (err) {
      answer(`The request did not reach the daemon: ${err.message}`, true);
    } finally {
      ui.restartButton.disabled = false;
    }
  }

  // A restart that ended, by id: a status answer built before the end and read after it must not
  // show it running again.
  const ended = new Set();

  function finish(id, state, moved, duration, reason) {
    ended.add(id);
    // The restart the page follows, or the last one when it follows none (or one that ended).
    if (!tracked || tracked.id === id || tracked.state !== 'running') tracked = { id, state, moved, duration, reason };
    showProgress();
  }

  // From the event stream: the restart's milestones, before the next poll shows them.
  function onEvent(record) {
    const id = record.restart;
    switch (record.event) {
      case 'restart_started':
        if (!ended.has(id) && (!tracked || tracked.id === id || tracked.state !== 'running')) {
          tracked = { id, state: 'running', done: 0, total: 0 };
        }
        restartRunning = true;
        showProgress();
        pollSoon();
        break;
      case 'migration_completed':
        if (tracked && tracked.id === id && tracked.state === 'running') {
          tracked.done = (tracked.done || 0) + 1;
          showProgress();
        }
        break;
      case 'restart_completed':
      case 'restart_failed':
        finish(id, record.event === 'restart_completed' ? 'completed' : 'failed', record.count, record.duration_ms,
          record.reason);
        pollSoon();
        break;
      default:
        break;
    }
  }

  // From a status answer: `restart` (the one running) and `last_restart` (how the last one ended).
  function restartFromStatus(status) {
    const r = status.restart;
    if (r) {
      restartRunning = true;
      if (ended.has(r.id)) return;  // an answer older than the end the stream already showed
      if (!tracked || tracked.id !== r.id || tracked.state !== 'running') tracked = { id: r.id, state: 'running' };
      Object.assign(tracked, {
        done: r.migrations_done, total: r.migrations_total, pairsDone: r.slaves_done, pairsTotal: r.slaves_total,
        elapsed: r.elapsed_ms, failing: r.failing,
      });
      showProgress();
      return;
    }
    restartRunning = false;
    const last = status.last_restart;
    if (last) finish(last.id, last.result === 'completed' ? 'completed' : 'failed', last.shards_moved, last.duration_ms, last.reason);
    else showProgress();
  }

  const seconds = (ms) => `${(Number(ms || 0) / 1000).toFixed(1)} s`;

  function showProgress() {
    const p = ui.progress;
    if (!tracked) {
      p.value = 0;
      p.dataset.state = 'idle';
      ui.restartText.textContent = 'No restart under way.';
      return;
    }
    p.dataset.restart = String(tracked.id);
    if (tracked.state === 'running') {
      const total = tracked.total || 0;
      const done = Math.min(tracked.done || 0, total || Infinity);
      const percent = total ? Math.floor((done * 100) / total) : 0;
      p.value = percent;
      p.dataset.state = 'running';
      const pairs = tracked.pairsTotal ? `, ${tracked.pairsDone}/${tracked.pairsTotal} slaves replaced` : '';
      const elapsed = tracked.elapsed !== undefined ? `, ${seconds(tracked.elapsed)}` : '';
      ui.restartText.textContent = `Restart #${tracked.id}: ${percent} % — ${done}/${total || '?'} shards moved` +
        `${pairs}${elapsed}${tracked.failing ? ' (failing: rolling back)' : ''}.`;
    } else if (tracked.state === 'completed') {
      p.value = 100;
      p.dataset.state = 'completed';
      ui.restartText.textContent = `Restart #${tracked.id} completed: 100 % — ${tracked.moved ?? '?'} shards moved in ` +
        `${seconds(tracked.duration)}.`;
    } else {
      p.dataset.state = 'failed';
      ui.restartText.textContent = `Restart #${tracked.id} failed after ${seconds(tracked.duration)}: ` +
        `${tracked.reason || 'no reason given'}.`;
    }
  }

  // ---- colours: one per slot, a lighter shade for even generations -----------------------------------

  const slotOf = new Map();   // slave id -> slot (from the status' slaves)

  function hash(text) {
    let h = 2166136261;
    for (let i = 0; i < text.length; i += 1) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
    return h >>> 0;
  }

  function colourOf(owner) {
    if (!owner) return '';
    const slot = slotOf.get(owner);
    const generation = /-g(\d+)/.exec(owner);
    const base = slot !== undefined && slot !== null ? slot : hash(owner) % 997;
    const hue = Math.round((base * 137.508) % 360);  // the golden angle: neighbouring slots far apart
    const light = generation && Number(generation[1]) % 2 === 0 ? 62 : 45;
    return `hsl(${hue} 65% ${light}%)`;
  }

  // ---- the fleet ----------------------------------------------------------------------------------

  function setText(element, text, cls) {
    element.textContent = text;
    element.classList.remove('ok', 'bad');
    if (cls) element.classList.add(cls);
  }

  function render(status) {
    slotOf.clear();
    for (const s of status.slaves || []) slotOf.set(s.id, s.slot);
    setText(ui.shardsRunning, `${status.shards_running} / ${status.shard_count}`,
      status.shards_running === status.shard_count ? 'ok' : 'bad');
    setText(ui.slaveCount, String((status.slaves || []).length));
    setText(ui.generation, String(status.generation));
    setText(ui.restarts, `${status.restarts_completed} completed, ${status.restarts_failed} failed`);
    setText(ui.health, status.healthy ? 'healthy' : 'degraded', status.healthy ? 'ok' : 'bad');
    ui.problems.replaceChildren(...(status.problems || []).map((text) => {
      const li = document.createElement('li');
      li.textContent = text;
      return li;
    }));
    renderSlaves(status.slaves || []);
    if (Array.isArray(status.shards)) renderShards(status.shard_count, status.shards);
    restartFromStatus(status);
  }

  function cell(text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function renderSlaves(slaves) {
    const rows = slaves.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.slave = s.id;
      const name = document.createElement('th');
      name.scope = 'row';
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.backgroundColor = colourOf(s.id);
      name.append(swatch, document.createTextNode(s.id));
      const rtt = typeof s.heartbeat_rtt_ms === 'number' ? `${s.heartbeat_rtt_ms.toFixed(s.heartbeat_rtt_ms < 10 ? 2 : 1)} ms` : '—';
      tr.append(name, cell(s.pid ? String(s.pid) : '—'), cell(s.address || '—'),
        cell(s.connected ? s.phase : `${s.phase} (not connected)`), cell(String(s.shards), 'num'), cell(rtt, 'num'));
      return tr;
    });
    ui.slaveRows.replaceChildren(...rows);
    ui.legend.replaceChildren(...slaves.map((s) => {
      const li = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.backgroundColor = colourOf(s.id);
      li.append(swatch, document.createTextNode(`${s.id}: ${s.shards} shards`));
      return li;
    }));
  }

  // The map: built once per shard count, then only the cells whose owner or phase changed are touched
  // (16,384 cells must not be rebuilt every two seconds).
  let cells = [];
  let shards = [];            // the last rows, by shard number
  let painted = [];           // what each cell shows now: "colour|classes"
  let current = -1;           // the cell the keyboard is on
  let described = -1;        // the cell whose owner and epoch are shown (pointed at or keyboard)

  function buildCells(count) {
    const fragment = document.createDocumentFragment();
    cells = new Array(count);
    for (let i = 0; i < count; i += 1) {
      const div = document.createElement('div');
      div.className = 'shard-cell';
      div.dataset.shard = String(i);
      cells[i] = div;
      fragment.append(div);
    }
    painted = new Array(count).fill('');
    ui.map.classList.toggle('size-s', count > 1024 && count <= 4096);
    ui.map.classList.toggle('size-xs', count > 4096);
    ui.map.replaceChildren(fragment);
    ui.map.dataset.shards = String(count);
    current = -1;
    described = -1;
  }

  function renderShards(count, rows) {
    if (cells.length !== count) buildCells(count);
    shards = new Array(count);
    for (const row of rows) {
      if (row.shard >= 0 && row.shard < count) shards[row.shard] = row;
    }
    for (let i = 0; i < count; i += 1) {
      const row = shards[i];
      const colour = row ? colourOf(row.owner) : '';
      let classes = 'shard-cell';
      if (row && row.moving) classes += ' moving';
      if (row && row.phase !== 'running' && !row.moving) classes += ' down';
      if (i === current) classes += ' current';
      const look = `${colour}|${classes}`;
      if (painted[i] === look) continue;
      painted[i] = look;
      cells[i].style.backgroundColor = colour;
      cells[i].className = classes;
    }
    if (described >= 0 && described < count) describe(described);  // its owner may have changed
  }

  function describe(i) {
    described = i;
    const row = shards[i];
    const text = row
      ? `Shard ${i}: owner ${row.owner || 'none'}, epoch ${row.epoch}, ${row.phase}${row.moving ? ', moving' : ''}`
      : `Shard ${i}: not in the last answer`;
    ui.shardDetail.textContent = text;
    cells[i].title = text;  // the tooltip, written when asked for rather than on 16,384 cells per poll
  }

  ui.map.addEventListener('mouseover', (e) => {
    const target = e.target;
    if (target instanceof HTMLElement && target.dataset.shard !== undefined) describe(Number(target.dataset.shard));
  });

  function columns() {
    if (cells.length < 2) return 1;
    const top = cells[0].offsetTop;
    let n = 1;
    while (n < cells.length && cells[n].offsetTop === top) n += 1;
    return n;
  }

  function moveTo(i) {
    if (!cells.length) return;
    const next = Math.max(0, Math.min(cells.length - 1, i));
    if (current >= 0) cells[current].classList.remove('current');
    current = next;
    cells[current].classList.add('current');
    painted[current] = '';  // repaint on the next poll with or without the outline
    cells[current].scrollIntoView({ block: 'nearest' });
    describe(current);
  }

  ui.map.addEventListener('keydown', (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() }[e.key];
    if (step !== undefined) moveTo(current < 0 ? 0 : current + step);
    else if (e.key === 'Home') moveTo(0);
    else if (e.key === 'End') moveTo(cells.length - 1);
    else return;
    e.preventDefault();
  });
  ui.map.addEventListener('focus', () => { if (current < 0) moveTo(0); });

  // ---- start ----------------------------------------------------------------------------------------

  if (readToken) connect();
  else showTokenForm('read');
})();
