// Attention: what is unread, what mentions me, and how loudly to say so.
//
// The page keeps each room's counts itself, from the frames of the browser's one stream
// (static/stream.js): a message after the room's read cursor that is not mine counts, one
// that names me or says @here/@room counts as a mention; a `read` event (from any tab or
// device of mine) moves the cursor; an edit or deletion of a message after the cursor asks
// the server for that room's counts again, since only it knows what the old version said. A
// stream that had to start over asks for every room's. The counts come first from the page
// (`data-unread`, `data-mentions`, `data-read`, `data-last`, `data-notify` on each sidebar
// entry) and live here, not in the DOM: a `room` frame replaces its entry with one that has
// none (it is encoded once for everyone), and they are put back.
//
// This tab moves the read cursor of its room when the newest messages are on screen in a
// visible, focused tab: not when they merely arrive. Moves are coalesced (at most one write a
// second, none while nothing newer is on screen), since the server limits them.
//
// Desktop notifications are shown by the tab that holds the browser's stream, once per event
// (the other tabs apply the same frames and say nothing), and only while no tab of this
// browser is visible and focused: the tabs tell each other over a BroadcastChannel, which
// also carries a room's notification level to the other tabs when one changes it.
(function (global) {
  'use strict';

  const CHANNEL = 'chat-attention';
  // The server counts no further than this; the page says "999+".
  const MOST = 1000;
  // A read cursor is written at most this often per tab.
  const READ_EVERY = 1000;
  // Edits and deletions come in bursts: one refetch per room for each burst.
  const REFETCH_AFTER = 300;
  // A message older than this when it arrives (a laptop that slept, a long reconnect) is
  // counted but not announced: a wall of stale notifications helps nobody.
  const STALE = 10 * 60 * 1000;

  function words(value) {
    return (value || '').split(/\s+/).filter(Boolean);
  }

  function fragment(html) {
    const template = document.createElement('template');
    template.innerHTML = html;
    return template.content.firstElementChild;
  }

  function shown(n) {
    return n >= MOST ? '999+' : String(n);
  }

  // options: {room, me, messages (the list element)}. Returns what the page calls:
  // frame(frame) after it applied one, role(role), state(state), readOf(room), and
  // considerReading() when it moved the list.
  function start(options) {
    const room = options.room;
    const me = options.me;
    const meLower = me.toLowerCase();
    const messages = options.messages;
    const tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);

    // name -> {kind, unread, mentions, read, last, notify, seen, exact}. `seen`: the messages
    // this page counted from frames, newest last ({id, mention}), so that counts fetched
    // from the server can be joined with frames that arrived while the fetch was under way;
    // `exact`: `seen` holds every unread message, so a cursor moved part of the way can be
    // counted here without asking.
    const counts = new Map();
    let role = 'follower';
    let connectedBefore = false;
    let lostStream = false;

    // --- counts -------------------------------------------------------------------------

    function fromEntry(entry) {
      if (!entry.dataset.room || entry.dataset.unread === undefined) return;
      const c = {
        kind: entry.dataset.kind,
        unread: Number(entry.dataset.unread) || 0,
        mentions: Number(entry.dataset.mentions) || 0,
        read: Number(entry.dataset.read) || 0,
        last: Number(entry.dataset.last) || 0,
        notify: entry.dataset.notify || 'mentions',
        seen: [],
        exact: false,
      };
      c.exact = c.unread === 0;
      counts.set(entry.dataset.room, c);
    }

    function readEntries(root) {
      root.querySelectorAll('.rooms .room[data-room]').forEach(function (entry) {
        if (!counts.has(entry.dataset.room)) fromEntry(entry);
        render(entry.dataset.room);
      });
    }

    function mentionsMe(el) {
      if (el.hasAttribute('data-mentions-room')) return true;
      return words(el.dataset.mentions).some(function (name) { return name.toLowerCase() === meLower; });
    }

    // Counts from the server (`GET /api/rooms` or `/api/rooms/{room}`), joined with what
    // frames brought since: a message newer than the room's `last_id` there was not counted.
    function applyFetched(o) {
      const c = counts.get(o.name) || { seen: [], read: 0, last: 0 };
      const localRead = c.read || 0;
      const read = Math.max(o.read || 0, localRead);
      const after = c.seen.filter(function (s) { return s.id > o.last_id && s.id > read; });
      const mentionsAfter = after.filter(function (s) { return s.mention; }).length;
      let again = false;
      if (localRead > (o.read || 0) && localRead < o.last_id) {
        // A `read` newer than what the server counted from, part of the way: which of its
        // unread messages that left is the server's to say. Ask once more.
        again = true;
      }
      if (localRead > (o.read || 0) && localRead >= o.last_id) {
        c.unread = after.length;
        c.mentions = mentionsAfter;
      } else {
        c.unread = Math.min(MOST, (o.unread || 0) + after.length);
        c.mentions = (o.mentions || 0) + mentionsAfter;
      }
      c.kind = o.kind;
      c.notify = o.notify || c.notify || 'mentions';
      c.read = read;
      c.last = Math.max(c.last || 0, o.last_id || 0);
      c.seen = c.seen.filter(function (s) { return s.id > read; });
      c.exact = c.unread === c.seen.length;
      counts.set(o.name, c);
      render(o.name);
      if (again) refetchSoon(o.name);
      if (o.name === room) {
        showLevel();
        considerReading();
      }
    }

    // Rooms whose counts are being asked for again, and when.
    const refetching = new Map();
    const waitingFor = new Map();

    function refetchSoon(name) {
      clearTimeout(refetching.get(name));
      refetching.set(name, setTimeout(function () { refetch(name); }, REFETCH_AFTER));
    }

    function refetch(name) {
      refetching.delete(name);
      const asked = fetch('/api/rooms/' + encodeURIComponent(name), { credentials: 'same-origin' })
        .then(function (response) {
          if (response.status === 404) {
            // Gone, or no longer mine to read.
            counts.delete(name);
            render(name);
            return null;
          }
          return response.ok ? response.json() : null;
        })
        .then(function (o) {
          if (o && o.name) applyFetched(o);
          return counts.get(name) || null;
        }, function () { return null; });
      waitingFor.set(name, asked);
      return asked;
    }

    // Every room's counts, page by page: after the stream started over, nothing here can be
    // trusted more than the server.
    let refetchingAll = null;
    function refetchAll() {
      if (refetchingAll) return refetchingAll;
      const listed = new Set();
      const page = function (after) {
        const query = '?limit=500' + (after ? '&after=' + encodeURIComponent(after) : '');
        return fetch('/api/rooms' + query, { credentials: 'same-origin' }).then(function (response) {
          if (!response.ok) return null;
          return response.json().then(function (body) {
            body.rooms.forEach(function (o) {
              listed.add(o.name);
              applyFetched(o);
            });
            return body.next ? page(body.next) : true;
          });
        });
      };
      refetchingAll = page(null).then(function (done) {
        if (done) {
          counts.forEach(function (_, name) {
            if (!listed.has(name)) {
              counts.delete(name);
              render(name);
            }
          });
        }
      }, function () {}).then(function () { refetchingAll = null; });
      return refetchingAll;
    }

    // The cursor of `name` moved to `upTo`: here or on another tab or device.
    function applyRead(name, upTo) {
      const c = counts.get(name);
      if (!c) {
        refetchSoon(name);
        return;
      }
      if (upTo <= c.read) return;
      c.read = upTo;
      c.seen = c.seen.filter(function (s) { return s.id > upTo; });
      if (upTo >= c.last) {
        c.unread = 0;
        c.mentions = 0;
        c.exact = true;
      } else if (c.exact) {
        c.unread = c.seen.length;
        c.mentions = c.seen.filter(function (s) { return s.mention; }).length;
      } else {
        refetchSoon(name);
      }
      render(name);
      closeNotifications(name, upTo);
    }

    function countMessage(el) {
      const name = el.dataset.room;
      const id = Number(el.dataset.id);
      let c = counts.get(name);
      if (!c) {
        // A room this page has no counts for (past the first page of the list, or new): the
        // server's are asked for, and meanwhile this one counts, so that the first message
        // of a new direct room is announced as any other.
        const entry = document.getElementById('room-' + name);
        c = { kind: entry ? entry.dataset.kind : 'public', unread: 0, mentions: 0, read: 0, last: 0, notify: 'mentions', seen: [], exact: false };
        counts.set(name, c);
        refetchSoon(name);
      }
      if (id > c.last) c.last = id;
      if (id <= c.read || el.dataset.user === me) return;
      if (c.seen.some(function (s) { return s.id === id; })) return;
      const mention = mentionsMe(el);
      c.seen.push({ id: id, mention: mention });
      if (c.seen.length > MOST) c.seen.shift();
      c.unread = Math.min(MOST, c.unread + 1);
      if (mention) c.mentions += 1;
      render(name);
      announce(el, name, c, mention);
    }

    // --- showing counts -----------------------------------------------------------------

    const baseTitle = document.title;
    const icon = document.querySelector('link[rel="icon"]');
    const plainIcon = icon && icon.getAttribute('href');
    const unreadIcon = icon && icon.dataset.unread;

    // What a room adds to the tab's title: its unread messages, unless it is muted.
    function loud(c) {
      return c.notify !== 'none';
    }

    function render(name) {
      const entry = document.getElementById('room-' + name);
      const c = counts.get(name);
      if (entry) {
        const link = entry.querySelector('a');
        let badge = entry.querySelector('.badge');
        if (!c) {
          if (badge) badge.remove();
          entry.classList.remove('unread', 'muted');
        } else {
          entry.dataset.unread = String(c.unread);
          entry.dataset.mentions = String(c.mentions);
          entry.dataset.read = String(c.read);
          entry.dataset.last = String(c.last);
          entry.dataset.notify = c.notify;
          entry.classList.toggle('unread', c.unread > 0 && loud(c));
          entry.classList.toggle('muted', !loud(c));
          // Mentions, and any message in a direct room, get the loud badge; other unread
          // messages the quiet one, unless the room is muted.
          const direct = c.kind === 'direct' && loud(c);
          const mention = c.mentions > 0 || (direct && c.unread > 0);
          const n = c.mentions > 0 ? c.mentions : direct || loud(c) ? c.unread : 0;
          if (!n) {
            if (badge) badge.remove();
          } else {
            if (!badge) {
              badge = document.createElement('span');
              if (link) link.appendChild(badge);
              else entry.appendChild(badge);
            }
            badge.className = 'badge' + (mention ? ' mention' : '');
            const what = c.mentions > 0 ? (n === 1 ? ' mention' : ' mentions') : n === 1 ? ' unread message' : ' unread messages';
            badge.textContent = shown(n);
            const spoken = document.createElement('span');
            spoken.className = 'visually-hidden';
            spoken.textContent = what;
            badge.appendChild(spoken);
          }
        }
      }
      showTotal();
    }

    // The tab's title and icon: how many unread messages there are in rooms that are not
    // muted (`(3) #general · chat`).
    function showTotal() {
      let total = 0;
      counts.forEach(function (c) { if (loud(c)) total += c.unread; });
      const title = total ? '(' + shown(total) + ') ' + baseTitle : baseTitle;
      if (document.title !== title) document.title = title;
      document.documentElement.dataset.unread = String(total);
      if (icon && unreadIcon) {
        const href = total ? unreadIcon : plainIcon;
        if (icon.getAttribute('href') !== href) icon.setAttribute('href', href);
      }
    }

    // --- the read cursor ----------------------------------------------------------------

    // A person is looking at this tab.
    function attentive() {
      return document.visibilityState === 'visible' && document.hasFocus();
    }

    // The id of the newest message of this room that is on screen, or 0.
    function newestOnScreen() {
      const list = messages.querySelectorAll(':scope > .message[data-id]');
      if (!list.length) return 0;
      const box = messages.getBoundingClientRect();
      for (let i = list.length - 1; i >= 0; i--) {
        const rect = list[i].getBoundingClientRect();
        if (rect.top < box.bottom && rect.bottom > box.top && rect.height > 0) return Number(list[i].dataset.id);
        if (rect.bottom <= box.top) return 0;
      }
      return 0;
    }

    let sentUpTo = 0;
    let lastWrite = 0;
    let writeTimer = null;
    let writing = false;
    let holdUntil = 0;

    // Something changed that may have put newer messages on screen: mark them read soon.
    function considerReading() {
      if (!attentive()) return;
      const c = counts.get(room);
      // Until this room's counts are known, the cursor is not: do not write blindly.
      if (!c) return;
      const id = newestOnScreen();
      if (!id || id <= Math.max(c.read, sentUpTo)) return;
      if (writeTimer) return;
      const wait = Math.max(100, lastWrite + READ_EVERY - Date.now(), holdUntil - Date.now());
      writeTimer = setTimeout(writeRead, wait);
    }

    function writeRead() {
      writeTimer = null;
      if (writing) return;
      const c = counts.get(room);
      // Checked again: the tab may have been left meanwhile.
      if (!c || !attentive()) return;
      const id = newestOnScreen();
      if (!id || id <= Math.max(c.read, sentUpTo)) return;
      writing = true;
      sentUpTo = id;
      lastWrite = Date.now();
      fetch('/api/rooms/' + encodeURIComponent(room) + '/read', {
        method: 'PUT',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ up_to: id }),
      }).then(function (response) {
        writing = false;
        if (response.ok) {
          applyRead(room, id);
        } else {
          // Refused (too many writes from my other tabs and devices): wait as told, then
          // try again with whatever is on screen then.
          sentUpTo = 0;
          const after = Number(response.headers.get('retry-after')) || 5;
          holdUntil = Date.now() + after * 1000;
        }
        considerReading();
      }, function () {
        writing = false;
        sentUpTo = 0;
        holdUntil = Date.now() + 3000;
      });
    }

    let scrollTimer = null;
    messages.addEventListener('scroll', function () {
      if (scrollTimer) return;
      scrollTimer = setTimeout(function () {
        scrollTimer = null;
        considerReading();
      }, 150);
    }, { passive: true });

    // --- which tabs a person is looking at ------------------------------------------------

    const channel = global.BroadcastChannel ? new BroadcastChannel(CHANNEL) : null;
    // Other tabs of this browser that said they are looked at (tab id -> true).
    const lookedAt = new Set();

    function tellAttention() {
      if (channel) channel.postMessage({ kind: 'attention', tab: tabId, attentive: attentive() });
    }

    function attentionChanged() {
      tellAttention();
      considerReading();
    }

    document.addEventListener('visibilitychange', attentionChanged);
    global.addEventListener('focus', attentionChanged);
    global.addEventListener('blur', attentionChanged);
    global.addEventListener('pagehide', function () {
      if (channel) channel.postMessage({ kind: 'attention', tab: tabId, attentive: false });
    });

    if (channel) {
      channel.onmessage = function (e) {
        const message = e.data;
        if (message.kind === 'attention') {
          if (message.attentive) lookedAt.add(message.tab);
          else lookedAt.delete(message.tab);
        } else if (message.kind === 'attention?') {
          tellAttention();
        } else if (message.kind === 'notify') {
          const c = counts.get(message.room);
          if (c) {
            c.notify = message.level;
            render(message.room);
          }
          if (message.room === room) showLevel();
        }
      };
    }

    function anyoneLooking() {
      return attentive() || lookedAt.size > 0;
    }

    // --- desktop notifications --------------------------------------------------------------

    const canNotify = 'Notification' in global && global.isSecureContext;
    const worker = canNotify && 'serviceWorker' in navigator
      ? navigator.serviceWorker.register('/sw.js').then(function () { return navigator.serviceWorker.ready; })
        .catch(function (error) {
          console.warn('chat: no service worker, so no desktop notifications: ' + error);
          return null;
        })
      : Promise.resolve(null);

    function wanted(c, mention) {
      if (c.notify === 'all') return true;
      if (c.notify === 'none') return false;
      return mention || c.kind === 'direct';
    }

    function placeOf(name, c) {
      if (c.kind === 'direct') return 'a direct message';
      const entry = document.getElementById('room-' + name);
      return (entry && entry.dataset.kind === 'private' ? '🔒' : '#') + name;
    }

    // A message for me arrived: say so on the desktop if nobody is looking at the chat.
    function announce(el, name, c, mention) {
      if (!canNotify || Notification.permission !== 'granted') return;
      if (role !== 'leader' && role !== 'solo') return;
      if (!wanted(c, mention) || anyoneLooking()) return;
      const time = el.querySelector('time[datetime]');
      const when = time ? Date.parse(time.getAttribute('datetime')) : NaN;
      if (!isNaN(when) && Date.now() - when > STALE) return;
      const text = el.querySelector('.text');
      let body = (text ? text.textContent : '').replace(/\s+/g, ' ').trim();
      if (body.length > 160) body = body.slice(0, 159) + '…';
      const id = Number(el.dataset.id);
      const title = el.dataset.user + ' in ' + placeOf(name, c);
      const details = {
        body: body,
        // One notification per message, whichever tab shows it and however often.
        tag: 'msg-' + id,
        icon: '/static/icon-192.png',
        data: { url: '/rooms/' + encodeURIComponent(name) + '/messages/' + id, room: name, id: id },
      };
      worker.then(function (registration) {
        if (registration) return registration.showNotification(title, details);
      }).catch(function (error) { console.warn('chat: notification not shown: ' + error); });
    }

    // Read, on any device: its notifications have nothing more to say.
    function closeNotifications(name, upTo) {
      if (!canNotify) return;
      worker.then(function (registration) {
        if (!registration) return;
        return registration.getNotifications().then(function (shownNow) {
          shownNow.forEach(function (n) {
            if (n.data && n.data.room === name && n.data.id <= upTo) n.close();
          });
        });
      }).catch(function () {});
    }

    // The button that asks for permission: asked only when pressed, never on load.
    const permission = document.getElementById('notify-permission');
    function showPermission() {
      if (!permission) return;
      permission.hidden = !canNotify || Notification.permission !== 'default';
    }
    if (permission) {
      permission.addEventListener('click', function () {
        Notification.requestPermission().then(showPermission, showPermission);
      });
      showPermission();
    }

    // --- this room's notification level -----------------------------------------------------

    const level = document.getElementById('notify-level');
    function showLevel() {
      const c = counts.get(room);
      if (level && c) level.value = c.notify;
    }
    if (level) {
      level.addEventListener('change', function () {
        const wantedLevel = level.value;
        fetch('/api/rooms/' + encodeURIComponent(room) + '/notifications', {
          method: 'PUT',
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ level: wantedLevel }),
        }).then(function (response) {
          if (!response.ok) {
            showLevel();
            return;
          }
          const c = counts.get(room);
          if (c) {
            c.notify = wantedLevel;
            render(room);
          }
          // Not an event: the other tabs of this browser hear it from here.
          if (channel) channel.postMessage({ kind: 'notify', room: room, level: wantedLevel });
        }, showLevel);
      });
    }

    // --- frames -------------------------------------------------------------------------

    function frame(f) {
      if (f.type === 'message') {
        const el = fragment(f.data);
        if (!el) return;
        countMessage(el);
        if (el.dataset.room === room) considerReading();
      } else if (f.type === 'edit' || f.type === 'delete') {
        const el = fragment(f.data);
        if (!el) return;
        const name = el.dataset.room;
        const id = Number(el.dataset.message);
        const c = counts.get(name);
        if (!c || id <= c.read) return;
        if (f.type === 'delete') c.seen = c.seen.filter(function (s) { return s.id !== id; });
        // Whether the old version counted (and as a mention) is the server's to say.
        c.exact = false;
        refetchSoon(name);
      } else if (f.type === 'read') {
        const el = fragment(f.data);
        if (el) applyRead(el.dataset.room, Number(el.dataset.upTo) || 0);
      } else if (f.type === 'room') {
        const el = fragment(f.data);
        if (!el) return;
        if (counts.has(el.dataset.room)) render(el.dataset.room);
        else refetchSoon(el.dataset.room);
      } else if (f.type === 'member') {
        const el = fragment(f.data);
        if (!el || el.dataset.user !== me) return;
        const name = el.dataset.room;
        if (el.dataset.joined === 'true') {
          refetchSoon(name);
        } else {
          clearTimeout(refetching.get(name));
          refetching.delete(name);
          counts.delete(name);
          showTotal();
        }
      }
    }

    function setRole(r) {
      role = r;
      // A new leader asks which tabs are looked at; before, it only listened.
      if (channel && r === 'leader') channel.postMessage({ kind: 'attention?' });
    }

    function setState(state) {
      if (state === 'connected') {
        if (connectedBefore && lostStream) refetchAll();
        connectedBefore = true;
        lostStream = false;
      } else if (connectedBefore) {
        lostStream = true;
      }
    }

    // The read cursor of `name`, as far as this page knows: now, or once fetched.
    function readOf(name) {
      const c = counts.get(name);
      if (c) return Promise.resolve(c.read);
      const asked = waitingFor.get(name) || refetch(name);
      return asked.then(function (found) { return found ? found.read : null; });
    }

    readEntries(document);
    // Rooms past the first page of the list count in the title too.
    if (document.getElementById('more-rooms')) refetchAll();
    showLevel();
    tellAttention();
    document.body.addEventListener('htmx:afterSwap', function () { readEntries(document); });
    global.addEventListener('resize', considerReading);

    return {
      frame: frame,
      role: setRole,
      state: setState,
      readOf: readOf,
      considerReading: considerReading,
    };
  }

  global.ChatAttention = { start: start };
})(self);
