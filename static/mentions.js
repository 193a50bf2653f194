// `@name` completion in the message box: typing `@` and the start of a name lists the room's
// members that match (and `@here`, `@room`), as an ARIA listbox the box points into with
// `aria-activedescendant`, so focus stays in the box. The arrows choose, Enter or Tab puts
// the name in, Escape closes the list; the mouse works too. The members are read once, when
// the first `@` is typed, from `GET /api/rooms/{room}/members` (every account, for a public
// room).
(function () {
  'use strict';

  const app = document.querySelector('.app[data-room]');
  const box = document.getElementById('content');
  const list = document.getElementById('mention-list');
  if (!app || !box || !list) return;

  const room = app.dataset.room;
  const me = app.dataset.user;
  // The most offered at once: more is a list to read, not to pick from.
  const SHOWN = 8;
  // What a mention of everyone says, for the list.
  const EVERYONE = app.dataset.kind === 'direct' ? [] : [
    { name: 'here', note: 'everyone in this room' },
    { name: 'room', note: 'everyone in this room' },
  ];

  let people = null;
  let loading = null;
  // What the list offers now ([{name, note}]), which one is chosen, and where the `@` is.
  let offered = [];
  let chosen = 0;
  let at = -1;

  function load() {
    if (people || loading) return loading || Promise.resolve();
    loading = fetch('/api/rooms/' + encodeURIComponent(room) + '/members', { credentials: 'same-origin' })
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (members) {
        people = members
          .map(function (m) { return m.username; })
          .filter(function (name) { return name !== me; })
          .sort(function (a, b) { return a.toLowerCase() < b.toLowerCase() ? -1 : 1; });
      }, function () { people = null; })
      .then(function () { loading = null; });
    return loading;
  }

  // The `@` and the part of a name right before the caret, if the caret is in a mention.
  function query() {
    if (box.selectionStart !== box.selectionEnd) return null;
    const before = box.value.slice(0, box.selectionStart);
    // As the server finds mentions: an `@` not preceded by a letter or digit.
    const match = /(^|[^A-Za-z0-9_.@-])@([A-Za-z0-9_.-]{0,32})$/.exec(before);
    if (!match) return null;
    return { at: before.length - match[2].length - 1, text: match[2].toLowerCase() };
  }

  function matches(text) {
    const names = (people || []).map(function (name) { return { name: name, note: '' }; }).concat(EVERYONE);
    const starts = names.filter(function (p) { return p.name.toLowerCase().indexOf(text) === 0; });
    const inside = text ? names.filter(function (p) { return p.name.toLowerCase().indexOf(text) > 0; }) : [];
    return starts.concat(inside).slice(0, SHOWN);
  }

  function open() {
    return !list.hidden;
  }

  function close() {
    list.hidden = true;
    list.replaceChildren();
    offered = [];
    at = -1;
    box.setAttribute('aria-expanded', 'false');
    box.removeAttribute('aria-activedescendant');
  }

  function show() {
    list.replaceChildren();
    offered.forEach(function (person, n) {
      const option = document.createElement('li');
      option.id = 'mention-option-' + n;
      option.className = 'mention-option';
      option.setAttribute('role', 'option');
      option.setAttribute('aria-selected', String(n === chosen));
      option.dataset.name = person.name;
      const name = document.createElement('span');
      name.className = 'mention-name';
      name.textContent = '@' + person.name;
      option.appendChild(name);
      if (person.note) {
        const note = document.createElement('span');
        note.className = 'mention-note';
        note.textContent = person.note;
        option.appendChild(note);
      }
      list.appendChild(option);
    });
    list.hidden = false;
    box.setAttribute('aria-expanded', 'true');
    box.setAttribute('aria-activedescendant', 'mention-option-' + chosen);
    const current = list.children[chosen];
    if (current) current.scrollIntoView({ block: 'nearest' });
  }

  function update() {
    const q = query();
    if (!q) {
      close();
      return;
    }
    if (!people) {
      load().then(function () { if (people) update(); });
      return;
    }
    const found = matches(q.text);
    if (!found.length) {
      close();
      return;
    }
    const keep = open() && at === q.at && offered[chosen] ? offered[chosen].name : null;
    offered = found;
    at = q.at;
    const kept = keep ? found.findIndex(function (p) { return p.name === keep; }) : -1;
    chosen = kept >= 0 ? kept : 0;
    show();
  }

  // The chosen name replaces what was typed of it, with a space after.
  function insert(n) {
    const person = offered[n];
    if (!person || at < 0) return;
    const end = box.selectionStart;
    box.setRangeText('@' + person.name + ' ', at, end, 'end');
    close();
    box.focus();
  }

  box.addEventListener('input', update);
  box.addEventListener('click', update);
  box.addEventListener('keyup', function (e) {
    if (e.key === 'ArrowLeft' || e.key === 'ArrowRight' || e.key === 'Home' || e.key === 'End') update();
  });
  box.addEventListener('blur', function () {
    // A click on the list blurs nothing (see mousedown); anything else closes it.
    close();
  });

  // Ahead of the box's own keys (Enter sends, Escape drops a reply): caught on the way down.
  box.form.addEventListener('keydown', function (e) {
    if (e.target !== box || !open() || e.isComposing) return;
    let handled = true;
    if (e.key === 'ArrowDown') {
      chosen = (chosen + 1) % offered.length;
      show();
    } else if (e.key === 'ArrowUp') {
      chosen = (chosen - 1 + offered.length) % offered.length;
      show();
    } else if ((e.key === 'Enter' && !e.shiftKey) || (e.key === 'Tab' && !e.shiftKey)) {
      insert(chosen);
    } else if (e.key === 'Escape') {
      close();
    } else {
      handled = false;
    }
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }, true);

  list.addEventListener('mousedown', function (e) {
    // Keep the focus (and the caret) in the box.
    e.preventDefault();
    const option = e.target.closest('.mention-option');
    if (option) insert(Array.prototype.indexOf.call(list.children, option));
  });
})();
