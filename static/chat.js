// The room page: applies every frame of the browser's one stream (static/stream.js) to this
// tab, and sends messages and status changes. No inline script: the Content-Security-Policy
// allows only files served from /static.
//
// Every element a frame can change carries the event's DOM id (msg-42, member-ada,
// room-general), so a frame applied twice changes nothing and a change replaces in place.
(function () {
  'use strict';

  const app = document.querySelector('.app[data-room]');
  if (!app) return;

  const room = app.dataset.room;
  const kind = app.dataset.kind;
  const me = app.dataset.user;
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

  // --- showing things ---------------------------------------------------------------------

  let noticeKind = null;
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

  // Times arrive as ISO 8601 UTC; show them in the reader's time zone.
  function localizeTimes(root) {
    root.querySelectorAll('time[datetime]').forEach(function (el) {
      if (el.dataset.local) return;
      const when = new Date(el.getAttribute('datetime'));
      if (isNaN(when)) return;
      el.dataset.local = '1';
      el.title = when.toLocaleString();
      const today = new Date().toDateString() === when.toDateString();
      el.textContent = today
        ? when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
        : when.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
    });
  }

  // What is mine is decided here, not by the server: a frame is the same for everyone.
  function markMine(root) {
    root.querySelectorAll('.message[data-user]').forEach(function (el) {
      el.classList.toggle('mine', el.dataset.user === me);
    });
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

  const apply = {
    message: function (frame) {
      const el = fragment(frame.data);
      if (!el) return;
      if (el.dataset.room !== room) {
        const entry = document.getElementById('room-' + el.dataset.room);
        if (entry) entry.classList.add('activity');
        return;
      }
      const stick = nearBottom();
      const id = Number(el.dataset.id);
      place(messages, el, function (other) { return Number(other.dataset.id) > id; });
      localizeTimes(el);
      markMine(messages);
      const sent = messages.querySelector('.pending[data-awaits="' + id + '"]');
      if (sent) sent.remove();
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
      },
      state: setConnection,
      // The stream's owner no longer holds what this page missed: read the page anew.
      gap: function () { location.reload(); },
      role: function (role) { document.documentElement.dataset.streamRole = role; },
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
    send('/api/rooms/' + room + '/messages', 'POST', { content: content, client_id: id }).then(
      function (event) {
        if (document.getElementById('msg-' + event.id)) pending.remove();
        else pending.dataset.awaits = String(event.id);
        if (noticeKind) showNotice('');
      },
      function (error) {
        pending.remove();
        box.value = box.value ? content + '\n' + box.value : content;
        clientId = id;
        showNotice(error.message, error.connection ? 'connection' : 'error');
      }
    );
  }

  composer.addEventListener('submit', function (e) {
    e.preventDefault();
    sendMessage();
    box.focus();
  });

  // Enter sends, Shift+Enter makes a new line.
  box.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendMessage();
    }
  });

  // A change of status that is refused goes back.
  statusSwitch.addEventListener('change', function () {
    const wanted = statusSwitch.value;
    send('/api/status', 'PUT', { status: wanted }).then(
      function (event) { shownStatus = event.status; },
      function (error) {
        statusSwitch.value = shownStatus;
        showNotice(error.message, error.connection ? 'connection' : 'error');
      }
    );
  });

  // "Load older" and "more rooms" (htmx swaps): keep the reader's place, show times, what is
  // mine and where I am.
  document.body.addEventListener('htmx:afterSwap', function () {
    localizeTimes(messages);
    markMine(messages);
    sortRoomsByKind();
    markCurrentRoom();
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

  labelPeople(document);
  markCurrentRoom();
  markMine(messages);
  localizeTimes(document);
  scrollToBottom();
})();
