// One event stream per browser, shared by all its tabs.
//
// A browser allows about six connections per host over HTTP/1.1, and every EventSource holds
// one, so each tab cannot have its own. One owner holds the user's stream (GET /api/events) and
// passes every frame to every tab:
//
// - where Web Locks exist (secure contexts: https, localhost), the tab holding the lock
//   "chat-stream" leads and shares frames over a BroadcastChannel; when it closes, the next
//   tab in line takes the lock and the stream, from the newest id it has seen;
// - elsewhere (plain http on a network), a SharedWorker running this same file owns it;
// - with neither, the tab keeps a stream of its own.
//
// Every tab keeps the newest id it has applied and a ring of recent frames. A tab that joins
// says which id its page was read at and gets the frames after it from the owner's ring, so it
// misses nothing and shows nothing twice; frames that arrive meanwhile wait until it has.
// The owner reopens the stream when it hears nothing, not even a ping, for two keep-alive
// intervals: a connection that died without closing (a sleeping laptop, a lost network).
//
// A frame is {type, id, data}: `id` is the event id (0 for ping and logout), `data` the
// event's HTML fragment or JSON.
(function (global) {
  'use strict';

  // Stored events and the control events a tab acts on. Pings only show the stream is alive.
  const EVENT_TYPES = ['message', 'edit', 'delete', 'reaction', 'status', 'room', 'member', 'read', 'reset', 'logout'];
  // Frames kept for tabs that join late or switch rooms.
  const RING = 2000;
  const LOCK = 'chat-stream';
  const CHANNEL = 'chat-stream';

  // The owner of the browser's stream. `send(message)` reaches every tab (its own included:
  // the caller decides); `sendTo(tab, message)` one tab.
  function Owner(options) {
    this.url = options.url;
    this.keepalive = options.keepalive * 1000;
    this.send = options.send;
    this.sendTo = options.sendTo;
    this.lastId = options.after;
    // The ring holds every frame after `floor`, up to `lastId`.
    this.ring = options.ring || [];
    this.floor = options.floor === undefined ? options.after : options.floor;
    this.state = 'connecting';
    this.source = null;
    this.heardAt = 0;
    this.retryDelay = 1000;
    this.stopped = false;
    const owner = this;
    this.watchdog = setInterval(function () { owner.check(); }, Math.max(250, this.keepalive / 4));
    this.open();
  }

  Owner.prototype.open = function () {
    if (this.stopped) return;
    const owner = this;
    const url = this.url + (this.url.indexOf('?') < 0 ? '?' : '&') + 'after=' + this.lastId;
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    this.heardAt = Date.now();
    source.onopen = function () {
      if (owner.source !== source) return;
      owner.heard();
      owner.retryDelay = 1000;
      owner.setState('connected');
    };
    source.onerror = function () {
      if (owner.source !== source) return;
      owner.setState('reconnecting');
      // Closed for good (an HTTP error): the browser will not retry; we do, after checking
      // that the session is still there.
      if (source.readyState === EventSource.CLOSED) owner.reopenLater();
    };
    source.addEventListener('ping', function () {
      if (owner.source !== source) return;
      owner.heard();
      if (owner.state !== 'connected') owner.setState('connected');
    });
    EVENT_TYPES.forEach(function (type) {
      source.addEventListener(type, function (e) {
        if (owner.source !== source) return;
        owner.heard();
        owner.receive({ type: type, id: type === 'logout' ? 0 : Number(e.lastEventId) || 0, data: e.data });
      });
    });
  };

  Owner.prototype.heard = function () {
    this.heardAt = Date.now();
  };

  Owner.prototype.receive = function (frame) {
    if (frame.type === 'logout') {
      this.stop();
      this.send({ kind: 'frame', frame: frame });
      return;
    }
    if (frame.type === 'reset') {
      // The server cannot resume from our id: every tab starts over from its page.
      this.lastId = frame.id;
      this.floor = frame.id;
      this.ring = [];
      this.send({ kind: 'frame', frame: frame });
      return;
    }
    if (frame.id <= this.lastId) return; // already passed on
    this.lastId = frame.id;
    this.ring.push(frame);
    if (this.ring.length > RING) this.floor = this.ring.shift().id;
    this.send({ kind: 'frame', frame: frame });
  };

  // A tab whose page was read at `after` joins: the frames it has not seen, or word that the
  // ring no longer holds them all.
  Owner.prototype.welcome = function (tab, after) {
    const frames = after >= this.floor ? this.ring.filter(function (f) { return f.id > after; }) : null;
    this.sendTo(tab, { kind: 'catchup', tab: tab, frames: frames, state: this.state });
  };

  Owner.prototype.setState = function (state) {
    this.state = state;
    this.send({ kind: 'state', state: state });
  };

  // No frame and no ping for two keep-alive intervals: the connection is dead even if the
  // browser has not noticed. Reopen from the newest id.
  Owner.prototype.check = function () {
    if (this.stopped || !this.source) return;
    if (Date.now() - this.heardAt > 2 * this.keepalive) {
      this.source.close();
      this.setState('reconnecting');
      this.open();
    }
  };

  Owner.prototype.reopenLater = function () {
    const owner = this;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, 30000);
    if (this.source) this.source.close();
    this.source = null;
    setTimeout(function () {
      fetch('/api/rooms', { credentials: 'same-origin' }).then(function (response) {
        if (response.status === 401) {
          owner.receive({ type: 'logout', id: 0, data: '{}' });
        } else {
          owner.open();
        }
      }, function () {
        owner.reopenLater();
      });
    }, delay);
  };

  Owner.prototype.stop = function () {
    this.stopped = true;
    clearInterval(this.watchdog);
    if (this.source) this.source.close();
    this.source = null;
  };

  // What a tab keeps: the newest id it has applied, recent frames, and the frames that wait
  // for its catch-up.
  function Tab(after, apply) {
    this.lastId = after;
    this.floor = after;
    this.ring = [];
    this.apply = apply;
    this.waiting = null; // frames held until the catch-up arrives
  }

  Tab.prototype.receive = function (frame) {
    if (this.waiting && frame.type !== 'logout' && frame.type !== 'reset') {
      this.waiting.push(frame);
      return;
    }
    this.take(frame);
  };

  Tab.prototype.take = function (frame) {
    if (frame.type !== 'logout' && frame.type !== 'reset') {
      if (frame.id <= this.lastId) return;
      this.lastId = frame.id;
      this.ring.push(frame);
      if (this.ring.length > RING) this.floor = this.ring.shift().id;
    }
    this.apply(frame);
  };

  Tab.prototype.hold = function () {
    if (!this.waiting) this.waiting = [];
  };

  // The owner's frames after our id, then whatever arrived meanwhile, in id order, once each.
  // `null`: the owner no longer holds them all.
  Tab.prototype.caughtUp = function (frames) {
    const waiting = this.waiting || [];
    this.waiting = null;
    if (frames === null) return false;
    frames.concat(waiting)
      .sort(function (a, b) { return a.id - b.id; })
      .forEach(this.take, this);
    return true;
  };

  // The page's side: joins the browser's stream. `handlers` gets `frame(frame)`,
  // `state(state)` and `gap()` (frames were missed: reload). Returns the role this tab has.
  function join(options, handlers) {
    const tab = new Tab(options.after, handlers.frame);
    const id = Math.random().toString(36).slice(2) + Date.now().toString(36);
    const roleChanged = handlers.role || function () {};

    function onMessage(message) {
      switch (message.kind) {
        case 'frame': tab.receive(message.frame); break;
        case 'state': handlers.state(message.state); break;
        case 'error': console.error('chat stream worker: ' + message.message); break;
        case 'catchup':
          if (message.tab !== id) return;
          if (!tab.caughtUp(message.frames)) handlers.gap();
          handlers.state(message.state);
          break;
      }
    }

    if (options.mode !== 'worker' && options.mode !== 'solo' && global.navigator.locks && global.BroadcastChannel) {
      const channel = new BroadcastChannel(CHANNEL);
      let owner = null;
      let helloTimer = null;
      const hello = function () {
        tab.hold();
        channel.postMessage({ kind: 'hello', tab: id, after: tab.lastId });
        // No answer: there may be no leader yet, or it is changing. Ask again.
        clearTimeout(helloTimer);
        helloTimer = setTimeout(function () { if (tab.waiting && !owner) hello(); }, 2000);
      };
      channel.onmessage = function (e) {
        const message = e.data;
        if (owner) {
          if (message.kind === 'hello') owner.welcome(message.tab, message.after);
          return;
        }
        if (message.kind === 'leader') {
          hello();
          return;
        }
        onMessage(message);
      };
      roleChanged('follower');
      hello();
      // A page that is left gives up its place in line at once, and, if it leads, the lead:
      // a page kept in the back-forward cache would otherwise keep either for good.
      const leaving = new AbortController();
      let release = null;
      navigator.locks.request(LOCK, { signal: leaving.signal }, function () {
        // Our turn: lead from the newest id this tab has applied, with its ring.
        clearTimeout(helloTimer);
        if (tab.waiting) tab.caughtUp([]);
        owner = new Owner({
          url: options.url,
          keepalive: options.keepalive,
          after: tab.lastId,
          ring: tab.ring.slice(),
          floor: tab.floor,
          send: function (message) {
            channel.postMessage(message);
            onMessage(message);
          },
          sendTo: function (_, message) { channel.postMessage(message); },
        });
        roleChanged('leader');
        channel.postMessage({ kind: 'leader' });
        // Held until this tab is left.
        return new Promise(function (resolve) { release = resolve; });
      }).catch(function () {});
      global.addEventListener('pagehide', function () {
        leaving.abort();
        if (owner) owner.stop();
        if (release) release();
        channel.close();
      });
      return;
    }

    if (options.mode !== 'solo' && global.SharedWorker) {
      try {
        const worker = new SharedWorker(options.worker, { name: 'chat-stream' });
        worker.port.onmessage = function (e) { onMessage(e.data); };
        worker.onerror = function () { handlers.state('reconnecting'); };
        tab.hold();
        worker.port.postMessage({ kind: 'hello', tab: id, after: tab.lastId, url: options.url, keepalive: options.keepalive });
        global.addEventListener('pagehide', function () { worker.port.postMessage({ kind: 'bye', tab: id }); });
        roleChanged('worker');
        return;
      } catch (_) {
        // Refused (a sandboxed context): keep a stream of our own.
      }
    }

    new Owner({
      url: options.url,
      keepalive: options.keepalive,
      after: tab.lastId,
      send: onMessage,
      sendTo: function (_, message) { onMessage(message); },
    });
    roleChanged('solo');
  }

  // Running as the SharedWorker: every tab is a port; the first one's page decides where the
  // stream starts.
  function serveAsWorker() {
    const ports = new Map();
    let owner = null;
    // A worker's errors reach no console a page's tests read: each page reports them.
    global.addEventListener('error', function (e) {
      ports.forEach(function (p) { p.postMessage({ kind: 'error', message: String(e.message) }); });
    });
    global.onconnect = function (e) {
      const port = e.ports[0];
      port.onmessage = function (message) {
        const hello = message.data;
        if (hello.kind === 'bye') ports.delete(hello.tab);
        if (hello.kind !== 'hello') return;
        ports.set(hello.tab, port);
        if (!owner) {
          owner = new Owner({
            url: hello.url,
            keepalive: hello.keepalive,
            after: hello.after,
            send: function (message) { ports.forEach(function (p) { p.postMessage(message); }); },
            sendTo: function (tab, message) { const p = ports.get(tab); if (p) p.postMessage(message); },
          });
        }
        owner.welcome(hello.tab, hello.after);
      };
      port.start();
    };
  }

  // A page brought back from the back-forward cache has missed what happened meanwhile and
  // has left the browser's stream: read it anew.
  if (typeof global.document !== 'undefined') {
    global.addEventListener('pageshow', function (e) {
      if (e.persisted) global.location.reload();
    });
  }

  if (typeof global.document === 'undefined' && typeof global.onconnect !== 'undefined') {
    serveAsWorker();
  } else {
    global.ChatStream = { join: join };
  }
})(self);
