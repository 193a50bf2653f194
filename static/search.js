// The search box: Ctrl+K (⌘K on a Mac) anywhere, or `/` when not typing in a field, puts the
// cursor in it; Escape leaves it. On the search page, the results' times read as local times.
// The form itself needs no script: it is a plain GET to /search. No inline script: the
// Content-Security-Policy allows only files served from /static.
(function () {
  'use strict';

  // The results' times, in the reader's own time zone and words.
  document.querySelectorAll('.search-result time[datetime]').forEach(function (time) {
    const at = new Date(time.getAttribute('datetime'));
    if (!Number.isNaN(at.getTime())) {
      time.textContent = at.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
      time.title = at.toString();
    }
  });

  const input = document.querySelector('form.search-box input[name="q"]');
  if (!input) return;

  function typing(element) {
    if (!element || element === document.body) return false;
    if (element.isContentEditable) return true;
    const tag = element.tagName;
    return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT';
  }

  function focusBox() {
    input.focus();
    input.select();
  }

  document.addEventListener('keydown', function (e) {
    if (e.defaultPrevented || e.isComposing) return;
    const key = e.key;
    if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && (key === 'k' || key === 'K')) {
      e.preventDefault();
      focusBox();
    } else if (key === '/' && !e.ctrlKey && !e.metaKey && !e.altKey && !typing(document.activeElement)) {
      e.preventDefault();
      focusBox();
    }
  });

  input.addEventListener('keydown', function (e) {
    // In the room's header, Escape gives the keys back to the page.
    if (e.key === 'Escape' && input.closest('.top')) input.blur();
  });
})();
