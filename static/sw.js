// The service worker, served from /sw.js so that its scope is the whole site. It exists for
// desktop notifications: a notification shown through a registration outlives the tab that
// showed it, can be counted with `registration.getNotifications()`, and a click on it
// reaches this worker even when no tab of the chat is open. It has no fetch handler: the chat
// is live or it is nothing, and a cached page would show a stale room.
'use strict';

self.addEventListener('install', function () {
  // A new version takes over at once: it holds no state that an old one could need.
  self.skipWaiting();
});

self.addEventListener('activate', function (e) {
  e.waitUntil(self.clients.claim());
});

// A click opens the message's permalink: in a tab of the chat that is already open (the one
// on that room if there is one), else in a new window.
self.addEventListener('notificationclick', function (e) {
  e.notification.close();
  const url = new URL((e.notification.data && e.notification.data.url) || '/', self.location.origin);
  if (url.origin !== self.location.origin) return;
  const room = url.pathname.split('/')[2];
  e.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (tabs) {
    const chat = tabs.filter(function (tab) { return new URL(tab.url).pathname.indexOf('/rooms/') === 0; });
    const same = chat.find(function (tab) { return new URL(tab.url).pathname.split('/')[2] === room; });
    const tab = same || chat[0];
    if (!tab) return self.clients.openWindow(url.href);
    // Only a tab this worker controls can be sent elsewhere; another opens a new one.
    return tab.focus().then(function (focused) { return (focused || tab).navigate(url.href); })
      .catch(function () { return self.clients.openWindow(url.href); });
  }));
});
