// The admin page: a "Copy" button beside each invite link. Without script the link is still
// there to select and copy by hand. No inline script: the Content-Security-Policy allows only
// files served from /static.
(function () {
  'use strict';

  const invites = document.getElementById('invites');
  if (!invites) return;

  // The Clipboard API exists only in secure contexts; on plain http across a network the
  // link's text is selected and copied the old way.
  function copy(button) {
    const field = button.parentElement.querySelector('.invite-url');
    const done = function () {
      button.textContent = 'Copied';
      setTimeout(function () { button.textContent = 'Copy'; }, 2000);
    };
    const byHand = function () {
      field.focus();
      field.select();
      try {
        if (document.execCommand('copy')) done();
        else button.textContent = 'Press Ctrl+C';
      } catch (_) {
        button.textContent = 'Press Ctrl+C';
      }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(button.dataset.copy).then(done, byHand);
    } else {
      byHand();
    }
  }

  invites.querySelectorAll('button.copy').forEach(function (button) {
    button.hidden = false;
    button.addEventListener('click', function () { copy(button); });
  });
  // A click in a link selects all of it, ready to copy.
  invites.querySelectorAll('.invite-url').forEach(function (field) {
    field.addEventListener('focus', function () { field.select(); });
  });
})();
