// The room page's behaviour, on top of htmx and its SSE extension. No inline script: the
// Content-Security-Policy allows only files served from /static.
(function () {
  'use strict';

  const app = document.querySelector('.app[data-room]');
  if (!app) return;

  const messages = document.getElementById('messages');
  const connection = document.getElementById('connection');
  const notice = document.getElementById('notice');
  const composer = document.getElementById('composer');
  const box = document.getElementById('content');
  const clientId = document.getElementById('client-id');

  // The newest event id this page has seen. Every way the stream can be reopened resumes
  // after it: the browser's own reconnect sends it as Last-Event-ID, and when the SSE
  // extension gives up and opens a fresh EventSource (which sends no Last-Event-ID) the URL
  // carries it as ?after= (see htmx-extensions#184).
  let lastSeen = Number(app.dataset.after) || 0;

  htmx.createEventSource = function (url) {
    const resume = new URL(url, location.href);
    resume.searchParams.set('after', String(lastSeen));
    return new EventSource(resume, { withCredentials: true });
  };

  function setConnection(state, text) {
    connection.dataset.state = state;
    connection.textContent = text;
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = !text;
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

  let stickToBottom = true;

  document.body.addEventListener('htmx:sseBeforeMessage', function (e) {
    const event = e.detail;
    switch (event.type) {
      case 'reset':
        // The server cannot resume from here (a replaced or pruned database): start over.
        e.preventDefault();
        location.reload();
        return;
      case 'logout':
        e.preventDefault();
        location.assign('/');
        return;
      case 'message':
        // A frame whose message is already on the page changes nothing.
        if (document.getElementById('msg-' + event.lastEventId)) {
          e.preventDefault();
        }
        stickToBottom = nearBottom();
        break;
    }
  });

  document.body.addEventListener('htmx:sseMessage', function (e) {
    const id = Number(e.detail.lastEventId);
    if (id > lastSeen) lastSeen = id;
    if (e.detail.type === 'message') {
      localizeTimes(messages);
      if (stickToBottom) scrollToBottom();
    }
  });

  // A status change for someone not yet in the list (a new account): add them.
  document.body.addEventListener('htmx:oobErrorNoTarget', function (e) {
    const member = e.detail.content;
    if (member && member.id && member.id.indexOf('member-') === 0) {
      member.removeAttribute('hx-swap-oob');
      document.getElementById('members').appendChild(member);
    }
  });

  document.body.addEventListener('htmx:sseOpen', function () {
    setConnection('connected', 'connected');
  });

  document.body.addEventListener('htmx:sseError', function () {
    setConnection('reconnecting', 'reconnecting…');
    // A stream refused for want of a session would be retried forever: check, and go to
    // the sign-in page if the session is gone.
    fetch('/api/rooms', { credentials: 'same-origin' }).then(function (response) {
      if (response.status === 401) location.assign('/');
    }, function () {});
  });

  // Each message carries an id made here, so that sending it twice (a double click, a retry
  // after a lost answer) stores it once. A new text gets a new id.
  function newClientId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    // Plain http on another host is not a secure context: no randomUUID, but random bytes.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, function (b) { return b.toString(16).padStart(2, '0'); }).join('');
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join('-');
  }
  clientId.value = newClientId();
  box.addEventListener('input', function () {
    clientId.value = newClientId();
  });

  // Enter sends, Shift+Enter makes a new line.
  box.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (box.value.trim()) htmx.trigger(composer, 'submit');
    }
  });

  composer.addEventListener('htmx:afterRequest', function (e) {
    if (e.detail.successful) {
      composer.reset();
      clientId.value = newClientId();
      showNotice('');
      box.focus();
    }
  });

  // Errors from the form endpoints are JSON {"error": "..."}: show them.
  document.body.addEventListener('htmx:responseError', function (e) {
    let text = 'Something went wrong (' + e.detail.xhr.status + ').';
    try {
      text = JSON.parse(e.detail.xhr.responseText).error || text;
    } catch (_) {}
    if (e.detail.xhr.status === 401) location.assign('/');
    showNotice(text);
  });

  document.body.addEventListener('htmx:sendError', function () {
    showNotice('Cannot reach the server; try again.');
  });

  // Older messages arrive above: keep the reader's place.
  document.body.addEventListener('htmx:afterSwap', function (e) {
    localizeTimes(e.detail.target.parentNode || document);
  });

  localizeTimes(document);
  scrollToBottom();
})();
