/* Live queue and conversation shortcuts. Works as progressive enhancement: every action is a
   plain form post without JavaScript. No inline script (the CSP forbids it). */
(function () {
  "use strict";
  var page = document.getElementById("page");
  if (!page) { return; }
  var kind = page.dataset.page;
  var me = page.dataset.me;
  var csrf = page.dataset.csrf;

  function typing(ev) {
    var t = ev.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }

  function liveState(text, ok) {
    var el = document.getElementById("live");
    if (el) { el.textContent = text; el.className = "live" + (ok ? " on" : ""); }
  }

  function connect(onEvent) {
    if (!window.EventSource) { return; }
    var source = new EventSource("/queue/events");
    source.onopen = function () { liveState("live", true); };
    source.onerror = function () { liveState("reconnecting", false); };
    ["routed", "ingested", "claimed", "released", "replied", "resolved", "reopened", "tagged", "taken_private"]
      .forEach(function (name) {
        source.addEventListener(name, function (msg) {
          var data = {};
          try { data = JSON.parse(msg.data); } catch (e) { return; }
          onEvent(name, data);
        });
      });
  }

  if (kind === "queue") {
    var body = document.getElementById("queue-rows");
    var selected = 0;
    var timer = null;
    var rows = function () { return Array.prototype.slice.call(body.querySelectorAll("tr.item")); };
    var select = function (i) {
      var all = rows();
      if (!all.length) { return; }
      selected = Math.max(0, Math.min(i, all.length - 1));
      all.forEach(function (r, n) { r.classList.toggle("selected", n === selected); });
      all[selected].scrollIntoView({block: "nearest"});
    };
    var refresh = function () {
      var known = {};
      rows().forEach(function (r) { known[r.dataset.conversationId] = true; });
      fetch("/queue/rows" + window.location.search, {credentials: "same-origin"})
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
        .then(function (html) {
          body.innerHTML = html;  /* server-rendered and escaped */
          rows().forEach(function (r) { if (!known[r.dataset.conversationId]) { r.classList.add("new"); } });
          select(selected);
        })
        .catch(function () { liveState("refresh failed", false); });
    };
    connect(function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
    select(0);
    document.addEventListener("keydown", function (ev) {
      if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
      var all = rows();
      if (ev.key === "j") { select(selected + 1); }
      else if (ev.key === "k") { select(selected - 1); }
      else if ((ev.key === "o" || ev.key === "Enter") && all[selected]) { window.location = all[selected].dataset.href; }
      else if (ev.key === "c" && all[selected]) {
        fetch(all[selected].dataset.href + "/claim", {method: "POST", credentials: "same-origin",
          headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}})
          .then(function (r) { return r.json(); })
          .then(function (d) { if (!d.claimed) { window.alert(d.claimed_by + " is working on this conversation."); } refresh(); });
      }
      else if (ev.key === "?") { window.alert("j/k move · o open · c claim"); }
    });
  }

  if (kind === "conversation") {
    var convId = Number(page.dataset.conversationId);
    var text = document.getElementById("reply-text");
    var template = document.getElementById("reply-template");
    var banner = document.getElementById("collision");
    connect(function (name, data) {
      if (data.conversation_id !== convId || data.by === me) { return; }
      banner.hidden = false;
      banner.textContent = (data.by || "Someone") + " " + name.replace("_", " ") +
        " this conversation just now. Reload before you reply.";
    });
    var buttons = Array.prototype.slice.call(document.querySelectorAll(".use-suggestion"));
    var use = function (button) {
      if (!text) { return; }
      var box = button.closest(".suggestion");
      text.value = box.querySelector(".text").textContent;
      if (template) { template.value = box.dataset.kind === "template" ? box.dataset.ref : ""; }
      text.focus();
    };
    buttons.forEach(function (b) { b.addEventListener("click", function () { use(b); }); });
    var click = function (id) { var el = document.getElementById(id); if (el) { el.click(); } };
    if (text) {
      text.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); document.getElementById("reply-form").requestSubmit(); }
      });
    }
    var privateForm = document.getElementById("private-form");
    if (privateForm) {
      privateForm.addEventListener("submit", function (ev) {
        if (!window.confirm("Take this conversation private? A case opens and the customer gets a secure link.")) { ev.preventDefault(); }
      });
    }
    document.addEventListener("keydown", function (ev) {
      if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
      if (ev.key === "c") { click("claim"); }
      else if (ev.key === "r" && text) { ev.preventDefault(); text.focus(); }
      else if (ev.key === "p") { click("take-private"); }
      else if (ev.key === "e") { click("resolve"); }
      else if (ev.key === "t") { ev.preventDefault(); var t = document.getElementById("tags"); if (t) { t.focus(); } }
      else if (ev.key === "g") { window.location = "/queue"; }
      else if (ev.key === "?") { var d = document.getElementById("help"); if (d && d.showModal) { d.showModal(); } }
      else if (/^[1-8]$/.test(ev.key) && buttons[Number(ev.key) - 1]) { ev.preventDefault(); use(buttons[Number(ev.key) - 1]); }
    });
  }
}());
