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
    ["routed", "ingested", "deleted", "claimed", "released", "replied", "resolved", "reopened", "tagged", "taken_private",
     "incident"]
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
    var banners = document.getElementById("incidents");
    var selected = 0;
    var selectedId = null;  /* the conversation under the cursor: a refresh re-orders rows, c/o must not move */
    var timer = null;
    /* conversations that arrived since the page loaded and the agent has not looked at yet: marked
       "new" through every later refresh until the agent moves onto one (j/k, a click) or opens it */
    var unseen = {};
    var rows = function () { return Array.prototype.slice.call(body.querySelectorAll("tr.item")); };
    var mark = function () {
      rows().forEach(function (r) { r.classList.toggle("new", !!unseen[r.dataset.conversationId]); });
    };
    var seen = function (row) { if (row) { delete unseen[row.dataset.conversationId]; row.classList.remove("new"); } };
    var select = function (i, looked) {
      var all = rows();
      if (!all.length) { selectedId = null; return; }
      selected = Math.max(0, Math.min(i, all.length - 1));
      selectedId = all[selected].dataset.conversationId;
      all.forEach(function (r, n) { r.classList.toggle("selected", n === selected); });
      all[selected].scrollIntoView({block: "nearest"});
      if (looked) { seen(all[selected]); }
    };
    var reselect = function () {  /* after a refresh: the same conversation, or the same place if it left */
      var all = rows();
      var at = all.findIndex(function (r) { return r.dataset.conversationId === selectedId; });
      select(at >= 0 ? at : selected, false);
    };
    var refresh = function () {
      var known = {};
      rows().forEach(function (r) { known[r.dataset.conversationId] = true; });
      fetch("/queue/rows" + window.location.search, {credentials: "same-origin"})
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
        .then(function (html) {
          body.innerHTML = html;  /* server-rendered and escaped */
          rows().forEach(function (r) { if (!known[r.dataset.conversationId]) { unseen[r.dataset.conversationId] = true; } });
          mark();
          reselect();
        })
        .catch(function () { liveState("refresh failed", false); });
      if (banners) {  /* the open incidents' banners: one may have opened, grown, gone quiet or had a status */
        fetch("/queue/incidents", {credentials: "same-origin"})
          .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
          .then(function (html) { banners.innerHTML = html; })  /* server-rendered and escaped */
          .catch(function () { liveState("refresh failed", false); });
      }
    };
    body.addEventListener("click", function (ev) {  /* a click on a row (or its link) is looking at it */
      var row = ev.target.closest && ev.target.closest("tr.item");
      if (row) { select(rows().indexOf(row), true); }
    });
    connect(function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
    select(0);
    document.addEventListener("keydown", function (ev) {
      if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
      var all = rows();
      if (ev.key === "j") { select(selected + 1, true); }
      else if (ev.key === "k") { select(selected - 1, true); }
      else if ((ev.key === "o" || ev.key === "Enter") && all[selected]) { seen(all[selected]); window.location = all[selected].dataset.href; }
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
    var suggestionButtons = function () { return Array.prototype.slice.call(document.querySelectorAll(".use-suggestion")); };
    var use = function (button) {
      if (!text) { return; }
      var box = button.closest(".suggestion");
      text.value = box.querySelector(".text").textContent;
      if (template) { template.value = box.dataset.kind === "template" ? box.dataset.ref : ""; }
      text.focus();
    };
    document.addEventListener("click", function (ev) {  /* delegated: the side panel is replaced below */
      var b = ev.target.closest && ev.target.closest(".use-suggestion");
      if (b) { use(b); }
    });
    /* "Reply to" picks the post being answered: the side panel (its author's record and history, the
       suggestions for that post) follows it, and so does the address (a reload keeps the choice). */
    var replyTo = document.getElementById("reply-to");
    var context = document.getElementById("context");
    if (replyTo && context && window.fetch && window.DOMParser) {
      replyTo.addEventListener("change", function () {
        var url = "/conversations/" + convId + "?mention=" + encodeURIComponent(replyTo.value);
        window.history.replaceState(null, "", url);
        fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
          .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
          .then(function (html) {
            var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("context");
            if (fresh) { context.innerHTML = fresh.innerHTML; }  /* server-rendered and escaped */
            document.querySelectorAll("article.mention").forEach(function (a) {
              a.classList.toggle("target", a.dataset.mentionId === replyTo.value);
            });
          })
          .catch(function () { banner.hidden = false; banner.textContent = "Could not load this author's context; reload the page."; });
      });
    }
    var click = function (id) { var el = document.getElementById(id); if (el) { el.click(); } };
    if (text) {
      text.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); document.getElementById("reply-form").requestSubmit(); }
      });
    }
    var replyForm = document.getElementById("reply-form");
    if (replyForm) {
      replyForm.addEventListener("submit", function (ev) {
        if (!ev.submitter || ev.submitter.id !== "take-private") { return; }
        var who = replyTo && replyTo.selectedOptions[0] ? replyTo.selectedOptions[0].textContent : "this post";
        if (!window.confirm("Take private: " + who + "\nA case opens for its author, who gets a secure link.")) { ev.preventDefault(); }
      });
    }
    /* resolving a conversation nobody from us has answered is asked first (e is one key away from r) */
    var resolveForm = document.getElementById("resolve-form");
    if (resolveForm) {
      resolveForm.addEventListener("submit", function (ev) {
        if (resolveForm.dataset.unanswered !== "1") { return; }
        if (!window.confirm("Resolve conversation " + convId + "?\nWe have not replied to it: the customer gets no answer.")) {
          ev.preventDefault();
        }
      });
    }
    /* taking over carries the reply as it is in the box now, with its post and visibility: it comes
       back in the box, unsent */
    var takeOver = document.getElementById("take-over-form");
    if (takeOver && replyForm) {
      takeOver.addEventListener("submit", function () {
        var visibility = replyForm.querySelector("select[name=visibility]");
        if (text) { takeOver.elements.draft.value = text.value; }
        if (replyTo) { takeOver.elements.mention_id.value = replyTo.value; }
        if (visibility) { takeOver.elements.visibility.value = visibility.value; }
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
      else if (/^[1-8]$/.test(ev.key) && suggestionButtons()[Number(ev.key) - 1]) { ev.preventDefault(); use(suggestionButtons()[Number(ev.key) - 1]); }
    });
  }
}());
