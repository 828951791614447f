// rackbox control page: what JavaScript adds to pages that work without it.
// - One Server-Sent Events stream per tab (/ui/stream), watching only what is on screen
//   (elements with data-live="row:ID", "detail:ID" or "timeline:ID"), paused while the tab
//   is hidden.
//   A fragment replaces the element with its id; a machine that leaves its status group or
//   filter, a lagging stream and a reconnect too long after its last event make the page read
//   its list again. Event ids are rackbox's event sequence numbers: a reconnect catches up.
// - Confirmation dialogs (native <dialog>) instead of the confirmation pages links lead to.
// - Select-all for the machine list's bulk actions.
// No inline script anywhere: the Content-Security-Policy allows only files of this origin.
(function () {
  "use strict";

  var source = null;
  var watching = "";
  var hiddenSince = null;

  function watchList() {
    var seen = [];
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var key = el.getAttribute("data-live");
      if (seen.indexOf(key) < 0 && seen.length < 200) seen.push(key);
    });
    return seen.join(",");
  }

  // Reads the page's live region again from the server (the list after a machine moved
  // between groups, everything after a reconnect).
  function refresh() {
    var region = document.getElementById("live-region");
    if (!region || !window.htmx) {
      return;
    }
    window.htmx.ajax("GET", window.location.href, {
      target: "#live-region",
      select: "#live-region",
      swap: "outerHTML",
    });
  }

  function applyFragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    var moved = false;
    Array.prototype.forEach.call(template.content.children, function (fresh) {
      var old = fresh.id && document.getElementById(fresh.id);
      if (!old) return;
      var was = old.getAttribute("data-status");
      var now = fresh.getAttribute("data-status");
      if (was !== now && old.closest("[data-status-sensitive]")) moved = true;
      // Keep a ticked bulk-selection box ticked across the swap.
      var box = old.querySelector("input[type=checkbox]");
      var freshBox = fresh.querySelector("input[type=checkbox]");
      if (box && freshBox) freshBox.checked = box.checked;
      old.replaceWith(fresh);
    });
    if (moved) refresh();
  }

  function connect() {
    var list = watchList();
    if (source && list === watching) return;
    if (source) source.close();
    source = null;
    watching = list;
    if (!list) return;
    // `since`: the event sequence number the page was rendered at, so changes made before the
    // stream opened are not missed; a reconnect sends Last-Event-ID instead.
    var main = document.getElementById("main");
    var since = (main && main.getAttribute("data-event-seq")) || "";
    source = new EventSource(
      "/ui/stream?watch=" + encodeURIComponent(list) + (since ? "&since=" + encodeURIComponent(since) : "")
    );
    source.addEventListener("fragment", function (e) {
      applyFragment(e.data);
    });
    source.addEventListener("resync", refresh);
    source.addEventListener("error", function () {
      document.body.classList.add("reconnecting");
    });
    source.addEventListener("open", function () {
      document.body.classList.remove("reconnecting");
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      hiddenSince = Date.now();
      if (source) source.close();
      source = null;
    } else if (hiddenSince !== null) {
      hiddenSince = null;
      watching = "";
      connect();
      refresh();
    }
  });

  function openDialog(event) {
    var trigger = event.target.closest("[data-dialog]");
    if (!trigger) return;
    var dialog = document.getElementById(trigger.getAttribute("data-dialog"));
    if (!dialog || typeof dialog.showModal !== "function") return;
    event.preventDefault();
    dialog.returnFocusTo = trigger;
    dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    openDialog(event);
    var close = event.target.closest("[data-close]");
    if (close) {
      var dialog = close.closest("dialog");
      if (dialog) {
        event.preventDefault();
        dialog.close();
      }
    }
  });

  document.addEventListener(
    "close",
    function (event) {
      var dialog = event.target;
      if (dialog.returnFocusTo) dialog.returnFocusTo.focus();
    },
    true
  );

  document.addEventListener("change", function (event) {
    var all = event.target.closest("[data-select-all]");
    if (!all) return;
    document.querySelectorAll("input[name=machine]").forEach(function (box) {
      box.checked = all.checked;
    });
  });

  // htmx swaps bring new rows: watch what is on screen now. A dialog whose form was
  // swapped out is closed.
  document.addEventListener("htmx:afterSettle", function () {
    connect();
  });

  document.addEventListener("DOMContentLoaded", connect);
  if (document.readyState !== "loading") connect();
})();
