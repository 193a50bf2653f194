// The room page: applies every frame of the browser's one stream (static/stream.js) to this
// tab, and sends messages and status changes. No inline script: the Content-Security-Policy
// allows only files served from /static.
//
// Every element a frame can change carries the event's DOM id (msg-42, text-42, reactions-42,
// member-ada, room-general), so a frame applied twice changes nothing and a change replaces in
// place. What differs per reader (mine, mentions me, my reactions) is decided here from data
// attributes; what the page adds around messages (day separators, groups, folds, the "new
// messages" line) carries no `msg-` id and is worked out again from the list whenever it changes.
(function () {
  'use strict';

  const app = document.querySelector('.app[data-room]');
  if (!app) return;

  const room = app.dataset.room;
  const kind = app.dataset.kind;
  const me = app.dataset.user;
  const admin = app.dataset.role === 'admin';
  // A message's own page (/rooms/{room}/messages/{id}) shows the messages around it, not the
  // newest: `data-focus` names it.
  const permalink = Boolean(app.dataset.focus);
  const messages = document.getElementById('messages');
  const rooms = document.getElementById('rooms');
  const roomLists = {
    public: rooms,
    private: document.getElementById('private-rooms'),
    direct: document.getElementById('direct-rooms'),
  };
  const members = document.getElementById('members');
  const connection = document.getElementById('connection');
  const notice = document.getElementById('notice');
  const composer = document.getElementById('composer');
  const box = document.getElementById('content');
  const statusSwitch = document.getElementById('status');
  const actions = document.getElementById('actions');
  const overlay = actions.parentElement;
  const jump = document.getElementById('jump');
  const latest = document.getElementById('latest');
  const picker = document.getElementById('picker');
  const pickerTitle = document.getElementById('picker-title');
  const pickerForm = document.getElementById('picker-form');
  const pickerInput = document.getElementById('picker-input');
  const confirmBox = document.getElementById('confirm-delete');
  const confirmText = document.getElementById('confirm-text');
  const confirmExcerpt = document.getElementById('confirm-excerpt');
  const replying = document.getElementById('replying');

  // --- showing things ---------------------------------------------------------------------

  let noticeKind = null;
  // What the reader is doing to messages: the message the toolbar is on, and what the last
  // pointer was (a mouse hovers; a finger taps); editing one message in place ({id, msg, box,
  // area, awaits}); the message whose deletion waits for a yes; the one the emoji picker is
  // for; the one being answered ({id, who, excerpt}).
  let actionsFor = null;
  let lastPointer = 'mouse';
  let editing = null;
  let deleting = null;
  let reactingTo = null;
  let replyTo = null;
  // The switch shows the stored status: the page's, then each of my status events.
  let shownStatus = statusSwitch.value;

  function showNotice(text, kind) {
    notice.textContent = text;
    notice.hidden = !text;
    noticeKind = text ? kind || 'error' : null;
  }

  function setConnection(state) {
    connection.dataset.state = state;
    connection.textContent = state === 'connected' ? 'connected' : state === 'connecting' ? 'connecting…' : 'reconnecting…';
    // A notice that the server could not be reached is stale once it can.
    if (state === 'connected' && noticeKind === 'connection') showNotice('');
  }

  function nearBottom() {
    return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
  }

  function scrollToBottom() {
    messages.scrollTop = messages.scrollHeight;
  }

  // Messages that arrived below while the reader was scrolled up, not yet scrolled to.
  let unseen = 0;
  // The reader has been to the bottom since the "new messages" line was drawn: the next
  // arrival while scrolled up starts a new one.
  let markerSeen = false;

  function updateJump() {
    if (permalink) {
      jump.hidden = true;
      return;
    }
    if (nearBottom()) {
      unseen = 0;
      if (marker) markerSeen = true;
    }
    const farAway = messages.scrollHeight - messages.scrollTop - messages.clientHeight > messages.clientHeight / 2;
    jump.hidden = !(unseen || farAway);
    jump.classList.toggle('unseen', unseen > 0);
    jump.textContent = unseen === 1 ? '1 new message ↓' : unseen ? unseen + ' new messages ↓' : 'Jump to latest ↓';
  }

  function clearMarker() {
    if (marker) marker.remove();
    marker = null;
    markerSeen = false;
  }

  // `el` arrived at the foot of the list while the reader was reading further up.
  function noteUnseen(el) {
    if (marker && markerSeen) clearMarker();
    if (!marker) {
      marker = document.createElement('li');
      marker.className = 'new-marker';
      marker.setAttribute('role', 'separator');
      marker.textContent = 'New messages';
      el.before(marker);
    }
    unseen += 1;
  }

  // Times arrive as ISO 8601 UTC; show them in the reader's time zone. The day separators
  // say which day, so a message shows its time of day (and the whole date on hover).
  function localizeTimes(root) {
    root.querySelectorAll('time[datetime]').forEach(function (el) {
      if (el.dataset.local) return;
      const when = new Date(el.getAttribute('datetime'));
      if (isNaN(when)) return;
      el.dataset.local = '1';
      el.title = when.toLocaleString();
      el.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    });
  }

  // The messages in `root`: a message itself, or every message inside it.
  function messagesIn(root) {
    if (root.matches && root.matches('.message')) return [root];
    return Array.prototype.slice.call(root.querySelectorAll('.message'));
  }

  function words(value) {
    return (value || '').split(/\s+/).filter(Boolean);
  }

  // What is mine is decided here, not by the server: a frame is the same for everyone.
  function markMine(root) {
    messagesIn(root).forEach(function (el) {
      if (el.dataset.user) el.classList.toggle('mine', el.dataset.user === me);
    });
  }

  // Messages that name me or say @here/@room (someone else's: my own @here calls others),
  // and those mentions in any message. Names are compared as accounts are: without regard
  // to case.
  const meLower = me.toLowerCase();
  function namesMe(el) {
    return words(el.dataset.mentions).some(function (name) { return name.toLowerCase() === meLower; });
  }
  function markMentions(root) {
    messagesIn(root).forEach(function (el) {
      const toRoom = el.hasAttribute('data-mentions-room') && el.dataset.user !== me;
      el.classList.toggle('mentions-me', namesMe(el) || toRoom);
    });
    root.querySelectorAll('.mention[data-user]').forEach(function (el) {
      el.classList.toggle('me', el.dataset.user.toLowerCase() === meLower);
    });
    root.querySelectorAll('.mention.mention-room').forEach(function (el) {
      const msg = el.closest('.message');
      el.classList.toggle('me', !msg || msg.dataset.user !== me);
    });
  }

  // My reactions, from who reacted (`data-users`), each time reactions are placed or replaced.
  function markReactions(root) {
    root.querySelectorAll('.reaction[data-users]').forEach(function (el) {
      const mine = words(el.dataset.users).indexOf(me) >= 0;
      el.classList.toggle('mine', mine);
      el.setAttribute('aria-pressed', String(mine));
    });
  }

  function decorate(root) {
    localizeTimes(root);
    markMine(root);
    markMentions(root);
    markReactions(root);
  }

  // The messages shown, in order (not one still being sent).
  function shownMessages() {
    return Array.prototype.slice.call(messages.querySelectorAll(':scope > .message[data-id]'));
  }

  function messageTime(el) {
    const time = el.querySelector(':scope > time[datetime]');
    const when = time && new Date(time.getAttribute('datetime'));
    return when && !isNaN(when) ? when : null;
  }

  function dayLabel(when) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (when.toDateString() === today.toDateString()) return 'Today';
    if (when.toDateString() === yesterday.toDateString()) return 'Yesterday';
    const options = { weekday: 'long', month: 'long', day: 'numeric' };
    if (when.getFullYear() !== today.getFullYear()) options.year = 'numeric';
    return when.toLocaleDateString([], options);
  }

  // Consecutive messages of one person within this long share one header.
  const GROUP_GAP = 5 * 60 * 1000;
  // The line above the first message that arrived while the reader was scrolled up.
  let marker = null;
  // The line above the first message that was unread when the room was opened ("new since
  // you were here"): it stays while the page does, so the reader can find the place again.
  let since = null;

  // Day separators before the first message of each local day, and the class `continued` on a
  // message that follows its author's previous one closely (not a reply, not edited: those
  // keep their header, which holds the quote's context and the "(edited)" mark). Worked out
  // from the whole list, so it holds after messages are placed, removed or loaded.
  function layout() {
    const kept = [];
    let previous = null;
    let previousWhen = null;
    shownMessages().forEach(function (el) {
      const when = messageTime(el);
      if (!when) return;
      const day = when.toDateString();
      const newDay = !previousWhen || previousWhen.toDateString() !== day;
      // The separator goes above the "new messages" line, if that is right above.
      let anchor = el;
      while (anchor.previousElementSibling && anchor.previousElementSibling.classList.contains('new-marker')) {
        anchor = anchor.previousElementSibling;
      }
      if (newDay) {
        let separator = anchor.previousElementSibling;
        if (!separator || !separator.classList.contains('day')) {
          separator = document.createElement('li');
          separator.className = 'day';
          separator.setAttribute('role', 'separator');
          anchor.before(separator);
        }
        separator.dataset.day = day;
        separator.textContent = dayLabel(when);
        kept.push(separator);
      }
      const continued = !newDay && anchor === el && previous.dataset.user === el.dataset.user &&
        when - previousWhen >= 0 && when - previousWhen < GROUP_GAP &&
        !el.dataset.replyTo && !el.dataset.edited;
      el.classList.toggle('continued', continued);
      previous = el;
      previousWhen = when;
    });
    messages.querySelectorAll(':scope > .day').forEach(function (separator) {
      if (kept.indexOf(separator) < 0) separator.remove();
    });
    // A "new messages" line with nothing new below it has nothing to say.
    if (marker && !(marker.nextElementSibling && marker.nextElementSibling.matches('.message[data-id]'))) {
      marker.remove();
      marker = null;
    }
    // The first unread message was deleted: the line moves down to the next one.
    if (since && !(since.nextElementSibling && since.nextElementSibling.matches('.message[data-id]'))) {
      let next = since.nextElementSibling;
      while (next && !next.matches('.message[data-id]')) next = next.nextElementSibling;
      if (next) next.before(since);
      else {
        since.remove();
        since = null;
      }
    }
  }

  // The room was opened with messages after `read`, my read cursor: a line above the first of
  // them, which is scrolled to when the newest messages do not leave room for it on screen.
  function showSince(read) {
    if (read === null || permalink || since) return;
    const first = shownMessages().find(function (el) { return Number(el.dataset.id) > read && el.dataset.user !== me; });
    if (!first) return;
    since = document.createElement('li');
    since.className = 'new-marker since';
    since.setAttribute('role', 'separator');
    since.textContent = 'New since you were here';
    // Right above the message: layout() keeps a day's separator above the line.
    first.before(since);
    layout();
    const stick = nearBottom();
    const top = since.getBoundingClientRect().top - messages.getBoundingClientRect().top;
    if (stick && top < 0) messages.scrollTop += top - 8;
    updateJump();
    attention.considerReading();
  }

  // A message taller than about twelve lines is folded, with a button to show it all. The
  // fold's height is the stylesheet's (`.folded > .text`), in the text's own ems.
  const FOLD_EMS = 17.4;
  function fold(el) {
    const text = el.querySelector(':scope > .text');
    if (!text || el.classList.contains('pending')) return;
    const em = parseFloat(getComputedStyle(text).fontSize) || 15;
    // Fold only what is clearly longer: hiding one line behind a button helps nobody.
    const long = text.scrollHeight > (FOLD_EMS + 3) * em;
    let toggle = el.querySelector(':scope > .fold');
    if (!long) {
      el.classList.remove('folded', 'unfolded');
      if (toggle) toggle.remove();
      return;
    }
    if (!toggle) {
      toggle = document.createElement('button');
      toggle.type = 'button';
      toggle.className = 'fold';
      text.after(toggle);
    }
    const open = el.classList.contains('unfolded');
    el.classList.toggle('folded', !open);
    toggle.textContent = open ? 'Show less' : 'Show more';
    toggle.setAttribute('aria-expanded', String(open));
  }

  // A short plain-text excerpt of a message, for the reply bar and the confirmation.
  function excerptOf(el) {
    const text = el.querySelector(':scope > .text');
    const plain = (text ? text.textContent : '').replace(/\s+/g, ' ').trim();
    return plain.length > 80 ? plain.slice(0, 79) + '…' : plain;
  }

  function fragment(html) {
    const template = document.createElement('template');
    template.innerHTML = html;
    return template.content.firstElementChild;
  }

  // Puts `el` in `list` in place of the element with its id, or else where `before(other)`
  // first holds, or at the end.
  function place(list, el, before) {
    const existing = document.getElementById(el.id);
    if (existing) {
      existing.replaceWith(el);
      return;
    }
    const next = Array.prototype.find.call(list.children, function (other) { return before(other); });
    list.insertBefore(el, next || null);
  }

  function markCurrentRoom() {
    document.querySelectorAll('.rooms .room a').forEach(function (a) {
      if (a.closest('.room').dataset.room === room) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
  }

  // A direct room is shown by the names of the other people in it (all of them if it is
  // mine alone); the frame names everyone, so the reader's own name is hidden here.
  function labelPeople(root) {
    root.querySelectorAll('.people').forEach(function (people) {
      const persons = people.querySelectorAll('.dm-person');
      persons.forEach(function (person) {
        person.hidden = person.dataset.user === me && persons.length > 1;
      });
    });
  }

  // Rooms that arrived in one list (a page of "more rooms") go to the list of their kind.
  function sortRoomsByKind() {
    rooms.querySelectorAll('.room').forEach(function (entry) {
      const list = roomLists[entry.dataset.kind];
      if (list && list !== rooms) place(list, entry, function (other) { return other.dataset.room > entry.dataset.room; });
    });
    labelPeople(document.querySelector('.rooms'));
  }

  // This room's topic and whether it is archived, as its newest `room` event says.
  function showRoomState(entry) {
    let topic = document.getElementById('topic');
    if (!topic) {
      topic = document.createElement('span');
      topic.id = 'topic';
      topic.className = 'topic';
      document.getElementById('room-title').after(topic);
    }
    topic.textContent = entry.title || '';
    topic.hidden = !entry.title;
    const archived = entry.classList.contains('archived');
    composer.hidden = archived;
    let note = document.querySelector('.archived-note');
    if (archived && !note) {
      note = document.createElement('p');
      note.className = 'archived-note';
      note.textContent = 'This room is archived: its history stays, and it takes no new messages.';
      composer.before(note);
    } else if (!archived && note) {
      note.remove();
    }
  }

  // The member list of this room, read again: someone joined or left.
  function refreshMembers() {
    fetch('/rooms/' + room + '/members', { credentials: 'same-origin' }).then(function (response) {
      if (response.ok) return response.text().then(function (html) { members.innerHTML = html; });
    }, function () {});
  }

  // I was let in to `name`, a private room: it joins the sidebar.
  function addPrivateRoom(name) {
    if (document.getElementById('room-' + name)) return;
    const entry = document.createElement('li');
    entry.id = 'room-' + name;
    entry.className = 'room activity';
    entry.dataset.room = name;
    entry.dataset.kind = 'private';
    const link = document.createElement('a');
    link.href = '/rooms/' + name;
    const mark = document.createElement('span');
    mark.className = 'hash';
    mark.textContent = '🔒';
    link.append(mark, name);
    entry.appendChild(link);
    place(roomLists.private, entry, function (other) { return other.dataset.room > name; });
  }

  // --- applying frames --------------------------------------------------------------------

  // Every quote of message `id` on the page.
  function quotesOf(id) {
    return document.querySelectorAll('[data-quote-of="' + Number(id) + '"]');
  }

  const apply = {
    message: function (frame) {
      const el = fragment(frame.data);
      if (!el) return;
      if (el.dataset.room !== room) {
        const entry = document.getElementById('room-' + el.dataset.room);
        if (entry) entry.classList.add('activity');
        return;
      }
      const id = Number(el.dataset.id);
      const sent = messages.querySelector('.pending[data-awaits="' + id + '"]');
      // Shown already: a message's own frame is never newer than the page, whose copy may
      // carry edits and reactions since.
      if (document.getElementById(el.id)) {
        if (sent) sent.remove();
        return;
      }
      const stick = nearBottom();
      place(messages, el, function (other) { return Number(other.dataset.id) > id; });
      if (sent) sent.remove();
      decorate(el);
      fold(el);
      const shown = shownMessages();
      if (!stick && shown[shown.length - 1] === el && el.dataset.user !== me) noteUnseen(el);
      layout();
      if (stick) scrollToBottom();
      updateJump();
    },
    // The new text replaces the old one in place; the message shows it was edited, and every
    // quote of it on the page shows its new excerpt.
    edit: function (frame) {
      const el = fragment(frame.data);
      if (!el || el.dataset.room !== room) return;
      const id = el.dataset.message;
      if (el.dataset.excerpt !== undefined) {
        quotesOf(id).forEach(function (quote) {
          const text = quote.querySelector('.quote-text');
          if (text && !quote.classList.contains('gone')) text.textContent = el.dataset.excerpt;
        });
      }
      const old = document.getElementById(el.id);
      if (!old) return;
      const stick = nearBottom();
      old.replaceWith(el);
      const message = document.getElementById('msg-' + id);
      if (message) {
        if (el.dataset.edited) message.dataset.edited = el.dataset.edited;
        message.dataset.mentions = el.dataset.mentions || '';
        message.toggleAttribute('data-mentions-room', el.hasAttribute('data-mentions-room'));
        const mark = message.querySelector(':scope > .edited');
        if (mark) {
          mark.hidden = false;
          const when = new Date(el.dataset.edited);
          if (!isNaN(when)) mark.title = 'edited ' + when.toLocaleString();
        }
        decorate(message);
        fold(message);
        layout();
      }
      if (stick) scrollToBottom();
    },
    // The message goes; a quote of it says it was deleted, and nothing waits on it any more.
    delete: function (frame) {
      const el = fragment(frame.data);
      if (!el || el.dataset.room !== room) return;
      const id = Number(el.dataset.message);
      quotesOf(id).forEach(function (quote) {
        quote.classList.add('gone');
        quote.removeAttribute('href');
        const text = document.createElement('span');
        text.className = 'quote-text';
        text.textContent = 'This message was deleted.';
        quote.replaceChildren(text);
      });
      if (replyTo && replyTo.id === id) {
        cancelReply();
        showNotice('The message you were replying to was deleted.', 'gone');
      }
      if (reactingTo === id) closePicker();
      if (deleting === id) closeConfirm();
      if (editing && editing.id === id) editing = null;
      const old = document.getElementById(el.id);
      if (!old) return;
      if (actionsFor === old) hideActions();
      old.remove();
      layout();
      updateJump();
    },
    reaction: function (frame) {
      const el = fragment(frame.data);
      if (!el || el.dataset.room !== room) return;
      const old = document.getElementById(el.id);
      if (!old) return;
      const stick = nearBottom();
      old.replaceWith(el);
      markReactions(el);
      if (stick) scrollToBottom();
    },
    status: function (frame) {
      const el = fragment(frame.data);
      if (!el) return;
      // A public room's members are everyone; another room lists only its members.
      if (kind === 'public' || document.getElementById(el.id)) place(members, el, function () { return false; });
      if (el.dataset.user === me) {
        shownStatus = el.dataset.status;
        statusSwitch.value = shownStatus;
      }
    },
    room: function (frame) {
      const el = fragment(frame.data);
      if (!el) return;
      const name = el.dataset.room;
      const list = roomLists[el.dataset.kind] || rooms;
      const existing = document.getElementById(el.id);
      if (existing) {
        // Keep what the page knows of it (activity).
        if (existing.classList.contains('activity')) el.classList.add('activity');
      } else if (list === rooms && document.getElementById('more-rooms')) {
        // The list shows a page of the rooms: one that sorts after it comes with "more rooms".
        const shown = rooms.querySelectorAll('.room');
        const last = shown[shown.length - 1];
        if (last && name > last.dataset.room) return;
      }
      place(list, el, function (other) { return other.dataset.room > name; });
      labelPeople(el);
      markCurrentRoom();
      if (name === room) showRoomState(el);
    },
    member: function (frame) {
      const el = fragment(frame.data);
      if (!el) return;
      const name = el.dataset.room;
      const joined = el.dataset.joined === 'true';
      if (el.dataset.user === me) {
        if (joined) {
          addPrivateRoom(name);
        } else {
          const entry = document.getElementById('room-' + name);
          if (entry) entry.remove();
          if (name === room) {
            // Nothing of this room reaches me any more.
            composer.hidden = true;
            showNotice(el.dataset.by === me ? 'You left this room.' : 'You were removed from this room.', 'gone');
            return;
          }
        }
      }
      if (name === room) refreshMembers();
    },
    reset: function () {
      // The server cannot resume from where this page is (a replaced or pruned database).
      location.reload();
    },
    logout: function () {
      location.assign('/');
    },
  };

  // The newest event this tab has applied.
  let applied = Number(app.dataset.after) || 0;

  // Unread counts, the read cursor, notifications (static/attention.js).
  const attention = ChatAttention.start({ room: room, me: me, messages: messages });

  ChatStream.join(
    {
      url: '/api/events?format=html',
      after: Number(app.dataset.after) || 0,
      keepalive: Number(app.dataset.keepalive) || 15,
      worker: app.dataset.worker,
    },
    {
      frame: function (frame) {
        const handler = apply[frame.type];
        if (handler) handler(frame);
        attention.frame(frame);
        if (frame.id > applied) applied = frame.id;
        // A saved edit closes its box once the page shows it.
        if (editing && editing.awaits && applied >= editing.awaits) closeEdit();
      },
      state: function (state) {
        setConnection(state);
        attention.state(state);
      },
      // The stream's owner no longer holds what this page missed: read the page anew.
      gap: function () { location.reload(); },
      role: function (role) {
        document.documentElement.dataset.streamRole = role;
        attention.role(role);
      },
    }
  );

  // --- sending ----------------------------------------------------------------------------

  // Each message carries an id made here, so that sending it twice (a retry after a lost
  // answer) stores it once.
  function newClientId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    // Plain http on another host is not a secure context: no randomUUID, but random bytes.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, function (b) { return b.toString(16).padStart(2, '0'); }).join('');
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join('-');
  }

  function errorOf(response) {
    return response.json().then(
      function (body) { return body.error || 'Something went wrong (' + response.status + ').'; },
      function () { return 'Something went wrong (' + response.status + ').'; }
    );
  }

  function send(path, method, body) {
    return fetch(path, {
      method: method,
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then(function (response) {
      if (response.status === 401) location.assign('/');
      // 204: nothing changed (an edit to the same text, a reaction already there).
      if (response.status === 204) return null;
      if (response.ok) return response.json();
      return errorOf(response).then(function (text) { throw new Error(text); });
    }, function () {
      const error = new Error('Cannot reach the server; try again.');
      error.connection = true;
      throw error;
    });
  }

  // A message is shown as sending until its event arrives; what was typed since stays in the
  // box. If it cannot be sent, its text goes back into the box, ahead of anything typed since,
  // with the same client id, so sending again cannot store it twice.
  let clientId = newClientId();

  function sendMessage() {
    const content = box.value;
    if (!content.trim()) return;
    const id = clientId;
    clientId = newClientId();
    const reply = replyTo;
    cancelReply();
    clearMarker();
    box.value = '';
    const pending = document.createElement('li');
    pending.className = 'message pending mine';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = me;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = content;
    const state = document.createElement('span');
    state.className = 'sending';
    state.textContent = 'sending…';
    pending.append(who, ' ', state, ' ', text);
    messages.appendChild(pending);
    scrollToBottom();
    const body = { content: content, client_id: id };
    if (reply) body.reply_to = reply.id;
    send('/api/rooms/' + room + '/messages', 'POST', body).then(
      function (event) {
        if (document.getElementById('msg-' + event.id)) pending.remove();
        else pending.dataset.awaits = String(event.id);
        if (noticeKind) showNotice('');
      },
      function (error) {
        pending.remove();
        box.value = box.value ? content + '\n' + box.value : content;
        clientId = id;
        if (reply && !replyTo && document.getElementById('msg-' + reply.id)) showReply(reply);
        showNotice(error.message, error.connection ? 'connection' : 'error');
      }
    );
  }

  composer.addEventListener('submit', function (e) {
    e.preventDefault();
    sendMessage();
    box.focus();
  });

  // Enter sends, Shift+Enter makes a new line; the up arrow in an empty box edits my last
  // message here; Escape drops the reply.
  box.addEventListener('keydown', function (e) {
    if (e.isComposing) return;
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      sendMessage();
    } else if (e.key === 'ArrowUp' && !box.value && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      const mine = shownMessages().filter(function (el) { return el.dataset.user === me; });
      if (mine.length) {
        e.preventDefault();
        startEdit(mine[mine.length - 1]);
      }
    } else if (e.key === 'Escape' && replyTo) {
      cancelReply();
    }
  });

  // A change of status that is refused goes back.
  statusSwitch.addEventListener('change', function () {
    const wanted = statusSwitch.value;
    send('/api/status', 'PUT', { status: wanted }).then(
      function (event) { if (event) shownStatus = event.status; },
      function (error) {
        statusSwitch.value = shownStatus;
        showNotice(error.message, error.connection ? 'connection' : 'error');
      }
    );
  });

  // "Load older" and "more rooms" (htmx swaps): keep the reader's place and focus, show
  // times, what is mine and where I am.
  let olderPlace = null;
  document.body.addEventListener('htmx:beforeSwap', function (e) {
    if (!e.detail.target || e.detail.target.id !== 'older' || !e.detail.shouldSwap) return;
    // The first message in view, and how far below the list's top it is.
    const top = messages.getBoundingClientRect().top;
    const first = shownMessages().find(function (el) { return el.getBoundingClientRect().bottom > top; });
    olderPlace = first ? { el: first, offset: first.getBoundingClientRect().top - top } : null;
  });
  document.body.addEventListener('htmx:afterSwap', function () {
    decorate(messages);
    layout();
    messages.querySelectorAll(':scope > .message:not(.folded):not(.unfolded)').forEach(fold);
    sortRoomsByKind();
    markCurrentRoom();
    if (olderPlace) {
      const kept = olderPlace;
      olderPlace = null;
      if (kept.el.isConnected) {
        const now = kept.el.getBoundingClientRect().top - messages.getBoundingClientRect().top;
        messages.scrollTop += now - kept.offset;
      }
      const next = document.querySelector('#older button');
      (next || messages).focus({ preventScroll: true });
    }
    updateJump();
  });

  // A member's name opens the direct room with them.
  members.addEventListener('click', function (e) {
    const who = e.target.closest('.member');
    if (!who || who.dataset.user === me) return;
    send('/api/dms', 'POST', { usernames: [who.dataset.user] }).then(
      function (direct) { location.assign('/rooms/' + direct.name); },
      function (error) { showNotice(error.message, error.connection ? 'connection' : 'error'); }
    );
  });

  // Leaving a private room, and adding someone to it, with names from the accounts.
  const leave = document.getElementById('leave');
  if (leave) {
    leave.addEventListener('click', function () {
      fetch('/api/rooms/' + room + '/members/' + encodeURIComponent(me), {
        method: 'DELETE',
        credentials: 'same-origin',
      }).then(function (response) {
        if (response.ok) location.assign('/rooms/general');
        else errorOf(response).then(function (text) { showNotice(text); });
      }, function () { showNotice('Cannot reach the server; try again.', 'connection'); });
    });
  }
  // The maker or an admin sets the topic and archives the room; the `room` event that follows
  // shows the change on every page, this one included.
  const settings = document.getElementById('room-settings');
  if (settings) {
    const topicInput = document.getElementById('topic-input');
    const archive = document.getElementById('archive');
    const change = function (body) {
      return fetch('/api/rooms/' + room, {
        method: 'PATCH',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }).then(function (response) {
        if (!response.ok) return errorOf(response).then(function (text) { throw new Error(text); });
        return response.json();
      }).then(function (changed) {
        archive.dataset.archived = String(changed.archived);
        archive.textContent = changed.archived ? 'Unarchive' : 'Archive';
        if (noticeKind) showNotice('');
      }, function (error) { showNotice(error.message || 'Cannot reach the server; try again.'); });
    };
    settings.addEventListener('submit', function (e) {
      e.preventDefault();
      change({ topic: topicInput.value });
    });
    archive.addEventListener('click', function () {
      change({ archived: archive.dataset.archived !== 'true' });
    });
  }

  const addMember = document.getElementById('add-member');
  if (addMember) {
    const name = document.getElementById('add-name');
    const people = document.getElementById('people');
    let known = false;
    name.addEventListener('focus', function () {
      if (known) return;
      known = true;
      fetch('/api/users', { credentials: 'same-origin' })
        .then(function (response) { return response.ok ? response.json() : []; })
        .then(function (users) {
          users.forEach(function (user) {
            const option = document.createElement('option');
            option.value = user.username;
            people.appendChild(option);
          });
        }, function () { known = false; });
    });
    addMember.addEventListener('submit', function (e) {
      e.preventDefault();
      const who = name.value.trim();
      if (!who) return;
      fetch('/api/rooms/' + room + '/members/' + encodeURIComponent(who), {
        method: 'PUT',
        credentials: 'same-origin',
      }).then(function (response) {
        if (response.ok) {
          name.value = '';
          if (noticeKind) showNotice('');
          refreshMembers();
        } else {
          errorOf(response).then(function (text) { showNotice(text); });
        }
      }, function () { showNotice('Cannot reach the server; try again.', 'connection'); });
    });
  }
  document.body.addEventListener('htmx:responseError', function (e) {
    if (e.detail.xhr.status === 401) location.assign('/');
    let text = 'Something went wrong (' + e.detail.xhr.status + ').';
    try {
      text = JSON.parse(e.detail.xhr.responseText).error || text;
    } catch (_) {}
    showNotice(text);
  });
  document.body.addEventListener('htmx:sendError', function () {
    showNotice('Cannot reach the server; try again.', 'connection');
  });

  // --- acting on messages: edit, delete, react, reply -------------------------------------

  function writable() {
    return !composer.hidden;
  }

  // One toolbar for the page, moved to the message under the mouse, or tapped (long-pressed)
  // on a touch screen: edit and delete for what I may change, react and reply while the room
  // takes messages.
  function showActions(msg) {
    if (!msg || !msg.dataset.id || msg.classList.contains('editing')) return;
    if (actionsFor === msg && !actions.hidden) return;
    if (actionsFor) actionsFor.classList.remove('acting');
    actionsFor = msg;
    const mine = msg.dataset.user === me;
    actions.querySelector('[data-action=edit]').hidden = !(mine && writable());
    actions.querySelector('[data-action=delete]').hidden = !(mine || admin);
    actions.querySelector('[data-action=react]').hidden = !writable();
    actions.querySelector('[data-action=reply]').hidden = !writable();
    msg.appendChild(actions);
    actions.hidden = false;
    msg.classList.add('acting');
  }

  function hideActions() {
    if (actionsFor) actionsFor.classList.remove('acting');
    actionsFor = null;
    actions.hidden = true;
    if (actions.parentElement !== overlay) overlay.prepend(actions);
  }

  function startEdit(msg) {
    if (msg.dataset.user !== me || !writable()) return;
    if (editing) closeEdit();
    hideActions();
    const id = Number(msg.dataset.id);
    const form = document.createElement('div');
    form.className = 'edit-box';
    const area = document.createElement('textarea');
    area.className = 'edit-area';
    area.rows = 2;
    area.maxLength = 8000;
    area.setAttribute('aria-label', 'Edit the message');
    area.disabled = true;
    area.placeholder = 'loading…';
    const bar = document.createElement('div');
    bar.className = 'edit-bar';
    const save = document.createElement('button');
    save.type = 'button';
    save.className = 'edit-save';
    save.textContent = 'Save';
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.className = 'edit-cancel quiet';
    cancel.textContent = 'Cancel';
    const hint = document.createElement('span');
    hint.className = 'edit-hint';
    hint.textContent = 'Enter saves, Escape cancels';
    bar.append(save, cancel, hint);
    form.append(area, bar);
    const text = msg.querySelector(':scope > .text');
    if (text) text.after(form);
    else msg.appendChild(form);
    msg.classList.add('editing');
    const state = { id: id, msg: msg, box: form, area: area, awaits: 0 };
    editing = state;
    save.addEventListener('click', saveEdit);
    cancel.addEventListener('click', closeEdit);
    area.addEventListener('keydown', function (e) {
      if (e.isComposing) return;
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        saveEdit();
      } else if (e.key === 'Escape') {
        e.preventDefault();
        closeEdit();
      }
    });
    // The box holds what was written (the Markdown), not what the page shows.
    send('/api/messages/' + id, 'GET').then(function (message) {
      if (editing !== state) return;
      area.value = message.content;
      area.disabled = false;
      area.placeholder = '';
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
      if (!msg.nextElementSibling) scrollToBottom();
    }, function (error) {
      if (editing !== state) return;
      closeEdit();
      showNotice(error.message, error.connection ? 'connection' : 'error');
    });
  }

  function closeEdit() {
    const state = editing;
    if (!state) return;
    editing = null;
    state.box.remove();
    state.msg.classList.remove('editing');
    box.focus({ preventScroll: true });
  }

  function saveEdit() {
    const state = editing;
    if (!state || state.area.disabled) return;
    const content = state.area.value;
    if (!content.trim()) {
      showNotice('A message needs some text: delete it instead.');
      return;
    }
    state.area.disabled = true;
    state.box.classList.add('saving');
    send('/api/messages/' + state.id, 'PATCH', { content: content }).then(function (event) {
      if (editing !== state) return;
      if (noticeKind) showNotice('');
      // The `edit` frame brings the new text to this tab as to every other: the box stays
      // until it has (or at once when nothing changed).
      if (!event || applied >= event.id) closeEdit();
      else state.awaits = event.id;
    }, function (error) {
      if (editing !== state) return;
      state.area.disabled = false;
      state.box.classList.remove('saving');
      state.area.focus();
      showNotice(error.message, error.connection ? 'connection' : 'error');
    });
  }

  // The in-page confirmation of a deletion.
  function askDelete(msg) {
    hideActions();
    closePicker();
    deleting = Number(msg.dataset.id);
    confirmText.textContent = msg.dataset.user === me
      ? 'Delete your message? It goes for everyone.'
      : 'Delete ' + msg.dataset.user + '’s message? It goes for everyone.';
    confirmExcerpt.textContent = excerptOf(msg);
    confirmBox.hidden = false;
    document.getElementById('confirm-no').focus();
  }

  function closeConfirm() {
    deleting = null;
    confirmBox.hidden = true;
  }

  document.getElementById('confirm-yes').addEventListener('click', function () {
    const id = deleting;
    closeConfirm();
    if (id === null) return;
    send('/api/messages/' + id, 'DELETE').then(
      function () { if (noticeKind) showNotice(''); },
      function (error) { showNotice(error.message, error.connection ? 'connection' : 'error'); }
    );
    box.focus({ preventScroll: true });
  });
  document.getElementById('confirm-no').addEventListener('click', closeConfirm);

  // Reactions: the picker adds one; a reaction's button adds mine or takes it back.
  function react(id, emoji, add) {
    const path = '/api/messages/' + Number(id) + '/reactions/' + encodeURIComponent(emoji);
    send(path, add ? 'PUT' : 'DELETE').then(
      function () { if (noticeKind) showNotice(''); },
      function (error) { showNotice(error.message, error.connection ? 'connection' : 'error'); }
    );
  }

  function openPicker(msg) {
    hideActions();
    closeConfirm();
    reactingTo = Number(msg.dataset.id);
    pickerTitle.textContent = 'React to ' + msg.dataset.user + ': ' + excerptOf(msg);
    picker.hidden = false;
    picker.querySelector('[data-emoji]').focus();
  }

  function closePicker() {
    reactingTo = null;
    picker.hidden = true;
    pickerInput.value = '';
  }

  picker.addEventListener('click', function (e) {
    const choice = e.target.closest('button[data-emoji]');
    if (!choice || reactingTo === null) return;
    react(reactingTo, choice.dataset.emoji, true);
    closePicker();
    box.focus({ preventScroll: true });
  });
  pickerForm.addEventListener('submit', function (e) {
    e.preventDefault();
    const emoji = pickerInput.value.trim();
    if (!emoji || reactingTo === null) return;
    react(reactingTo, emoji, true);
    closePicker();
    box.focus({ preventScroll: true });
  });

  // Replying: the message answered shows above the box until it is sent or dropped.
  function showReply(reply) {
    replyTo = reply;
    document.getElementById('replying-who').textContent = reply.who;
    document.getElementById('replying-text').textContent = reply.excerpt;
    replying.hidden = false;
  }

  function startReply(msg) {
    hideActions();
    showReply({ id: Number(msg.dataset.id), who: msg.dataset.user, excerpt: excerptOf(msg) });
    box.focus();
  }

  function cancelReply() {
    replyTo = null;
    replying.hidden = true;
  }

  document.getElementById('reply-cancel').addEventListener('click', function () {
    cancelReply();
    box.focus();
  });

  actions.addEventListener('click', function (e) {
    const button = e.target.closest('button[data-action]');
    const msg = actionsFor;
    if (!button || !msg) return;
    const action = button.dataset.action;
    if (action === 'edit') startEdit(msg);
    else if (action === 'delete') askDelete(msg);
    else if (action === 'react') openPicker(msg);
    else if (action === 'reply') startReply(msg);
  });

  messages.addEventListener('pointerdown', function (e) { lastPointer = e.pointerType; }, true);
  messages.addEventListener('pointerover', function (e) {
    if (e.pointerType !== 'mouse') return;
    showActions(e.target.closest('.message'));
  });
  messages.addEventListener('pointerleave', function (e) {
    if (e.pointerType === 'mouse') hideActions();
  });
  // From the keyboard: the toolbar follows focus into a message (a link, a reaction).
  messages.addEventListener('focusin', function (e) {
    const msg = e.target.closest('.message');
    if (msg && msg !== actionsFor) showActions(msg);
  });
  // A long press on a touch screen opens the toolbar instead of the browser's menu (a link
  // keeps its menu).
  messages.addEventListener('contextmenu', function (e) {
    if (lastPointer !== 'touch' || e.target.closest('a')) return;
    const msg = e.target.closest('.message');
    if (!msg || !msg.dataset.id) return;
    e.preventDefault();
    showActions(msg);
  });

  messages.addEventListener('click', function (e) {
    if (e.target.closest('.actions, .edit-box')) return;
    const reaction = e.target.closest('.reaction[data-emoji]');
    if (reaction) {
      const holder = reaction.closest('.reactions');
      const id = holder.dataset.message || holder.closest('.message').dataset.id;
      if (id) react(id, reaction.dataset.emoji, words(reaction.dataset.users).indexOf(me) < 0);
      return;
    }
    const toggle = e.target.closest('.fold');
    if (toggle) {
      const msg = toggle.closest('.message');
      msg.classList.toggle('unfolded');
      fold(msg);
      return;
    }
    // A quote of a message on this page goes to it here rather than to its own page.
    const quote = e.target.closest('a.quote[data-quote-of]');
    if (quote) {
      const quoted = document.getElementById('msg-' + Number(quote.dataset.quoteOf));
      if (quoted && !e.ctrlKey && !e.metaKey && !e.shiftKey) {
        e.preventDefault();
        quoted.scrollIntoView({ block: 'center', behavior: 'smooth' });
        quoted.classList.remove('flash');
        void quoted.offsetWidth; // restart the animation
        quoted.classList.add('flash');
      }
      return;
    }
    // A tap on a touch screen opens the toolbar on that message, or closes it.
    if (lastPointer !== 'mouse' && !e.target.closest('a, button, input, textarea')) {
      const msg = e.target.closest('.message');
      if (msg && msg === actionsFor) hideActions();
      else showActions(msg);
    }
  });
  messages.addEventListener('animationend', function (e) {
    if (e.animationName === 'flash') e.target.classList.remove('flash');
  });

  // A tap or click elsewhere closes what is open; so does Escape.
  document.addEventListener('click', function (e) {
    if (e.target.closest('.actions')) return;
    if (!picker.hidden && !picker.contains(e.target)) closePicker();
    if (!confirmBox.hidden && !confirmBox.contains(e.target)) closeConfirm();
    if (lastPointer !== 'mouse' && actionsFor && !messages.contains(e.target)) hideActions();
  });
  document.addEventListener('keydown', function (e) {
    if (e.key !== 'Escape') return;
    if (!picker.hidden) {
      closePicker();
      box.focus();
    } else if (!confirmBox.hidden) {
      closeConfirm();
      box.focus();
    } else if (actionsFor) {
      hideActions();
    }
  });

  // --- finding one's way ------------------------------------------------------------------

  messages.addEventListener('scroll', updateJump, { passive: true });
  jump.addEventListener('click', function () {
    scrollToBottom();
    updateJump();
    box.focus({ preventScroll: true });
  });

  // A narrower or wider window changes which messages are long.
  let width = messages.clientWidth;
  window.addEventListener('resize', function () {
    if (messages.clientWidth === width) return;
    width = messages.clientWidth;
    const stick = nearBottom();
    messages.querySelectorAll(':scope > .message').forEach(fold);
    if (stick) scrollToBottom();
    updateJump();
  });

  labelPeople(document);
  markCurrentRoom();
  decorate(messages);
  localizeTimes(document);
  layout();
  messages.querySelectorAll(':scope > .message').forEach(fold);
  const highlight = permalink && messages.querySelector(':scope > .message.highlight');
  if (permalink) latest.hidden = false;
  if (highlight) highlight.scrollIntoView({ block: 'center' });
  else scrollToBottom();
  updateJump();
  attention.readOf(room).then(showSince);
  attention.considerReading();
})();
